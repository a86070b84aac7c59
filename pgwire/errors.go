package pgwire

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"
)

// SQLSTATE codes the servers use (PostgreSQL's errcodes.txt).
const (
	CodeSyntaxError            = "42601"
	CodeUndefinedObject        = "42704"
	CodeDuplicateObject        = "42710"
	CodeInvalidParameterValue  = "22023"
	CodeFeatureNotSupported    = "0A000"
	CodeProtocolViolation      = "08P01"
	CodeInvalidAuthorization   = "28000"
	CodeInvalidPassword        = "28P01"
	CodeQueryCanceled          = "57014"
	CodeObjectNotInPrereqState = "55000"
	CodeDependentObjects       = "2BP01" // dependent_objects_still_exist
	CodeInternalError          = "XX000"
	CodeDataCorrupted          = "XX001"
	CodeUndefinedParameter     = "42P02"
	CodeUndefinedFile          = "58P01"
	CodeInvalidStatementName   = "26000" // invalid_sql_statement_name
	CodeInvalidCursorName      = "34000"
)

// Error is an error a handler returns to send the client an ErrorResponse
// with a SQLSTATE; the session continues. Any other error is reported as
// an internal error (XX000).
type Error struct {
	Code    string // SQLSTATE
	Message string
	Detail  string
	Hint    string
}

func (e *Error) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("%s (%s): %s", e.Message, e.Code, e.Detail)
	}
	return fmt.Sprintf("%s (%s)", e.Message, e.Code)
}

// Errorf builds an *Error with the given SQLSTATE.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// errorResponse turns any error into the ErrorResponse sent to the client.
func errorResponse(err error) *pgproto3.ErrorResponse {
	var pe *Error
	if !errors.As(err, &pe) {
		pe = &Error{Code: CodeInternalError, Message: err.Error()}
	}
	return &pgproto3.ErrorResponse{
		Severity:            "ERROR",
		SeverityUnlocalized: "ERROR",
		Code:                pe.Code,
		Message:             pe.Message,
		Detail:              pe.Detail,
		Hint:                pe.Hint,
	}
}

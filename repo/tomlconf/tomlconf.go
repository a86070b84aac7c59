package tomlconf

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// DecodeStrict decodes the TOML document b into v, which holds the
// defaults for what b leaves out. name (a file name, or what the document
// is) starts every error message. An unknown key is an error that shows
// it; a malformed value, one that names its line, column and key.
func DecodeStrict(name string, b []byte, v any) error {
	dec := toml.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		return nil
	}
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		return fmt.Errorf("%s: unknown setting:\n%s", name, strict.String())
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		if key := strings.Join(de.Key(), "."); key != "" {
			return fmt.Errorf("%s:%d:%d: %s: %v", name, row, col, key, de)
		}
		return fmt.Errorf("%s:%d:%d: %v", name, row, col, de)
	}
	return fmt.Errorf("%s: %w", name, err)
}

// Duration is a time.Duration written in TOML as a string such as "10s" or
// "7h30m".
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: want a number with a unit, e.g. \"30s\" or \"168h\"", b)
	}
	*d = Duration(v)
	return nil
}

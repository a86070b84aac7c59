package id

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

// Len is the number of bytes in an id.
const Len = 16

// TenantID identifies a tenant: a set of timelines (one database cluster
// and its branches) with its own configuration.
type TenantID [Len]byte

// TimelineID identifies a timeline (a branch) within a tenant.
type TimelineID [Len]byte

// NewTenantID returns a fresh random tenant id.
func NewTenantID() TenantID { return TenantID(random()) }

// NewTimelineID returns a fresh random timeline id.
func NewTimelineID() TimelineID { return TimelineID(random()) }

// ParseTenantID parses a tenant id printed by TenantID.String.
func ParseTenantID(s string) (TenantID, error) {
	b, err := parse(s)
	if err != nil {
		return TenantID{}, fmt.Errorf("invalid tenant id: %w", err)
	}
	return TenantID(b), nil
}

// ParseTimelineID parses a timeline id printed by TimelineID.String.
func ParseTimelineID(s string) (TimelineID, error) {
	b, err := parse(s)
	if err != nil {
		return TimelineID{}, fmt.Errorf("invalid timeline id: %w", err)
	}
	return TimelineID(b), nil
}

// String prints the id as 32 lowercase hexadecimal characters.
func (t TenantID) String() string { return hex.EncodeToString(t[:]) }

// String prints the id as 32 lowercase hexadecimal characters.
func (t TimelineID) String() string { return hex.EncodeToString(t[:]) }

// IsZero reports whether t is the zero id, which no tenant has.
func (t TenantID) IsZero() bool { return t == TenantID{} }

// IsZero reports whether t is the zero id, which no timeline has; it
// stands for "no timeline" (e.g. a timeline without an ancestor).
func (t TimelineID) IsZero() bool { return t == TimelineID{} }

// MarshalText implements encoding.TextMarshaler.
func (t TenantID) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (t *TenantID) UnmarshalText(b []byte) error {
	v, err := ParseTenantID(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (t TimelineID) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (t *TimelineID) UnmarshalText(b []byte) error {
	v, err := ParseTimelineID(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

func random() [Len]byte {
	var b [Len]byte
	// crypto/rand.Read never fails on the platforms Go supports (it
	// crashes the program instead), so there is no error to return.
	_, _ = rand.Read(b[:])
	return b
}

func parse(s string) ([Len]byte, error) {
	var b [Len]byte
	if len(s) != 2*Len {
		return b, fmt.Errorf("%q: want %d hexadecimal characters, got %d", s, 2*Len, len(s))
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return b, fmt.Errorf("%q: %q is not a lowercase hexadecimal digit", s, c)
		}
	}
	if _, err := hex.Decode(b[:], []byte(s)); err != nil {
		return b, fmt.Errorf("%q: %w", s, err)
	}
	return b, nil
}

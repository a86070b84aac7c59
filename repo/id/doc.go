// Package id defines the identifiers of tenants and timelines: 16 random
// bytes, printed and parsed as 32 lowercase hexadecimal characters (the
// design's section 3). The two have the same format but distinct types, so
// that a timeline id cannot be passed where a tenant id is wanted.
//
// Parse reads outside input (URLs, CLI arguments, directory names): it must
// reject anything but exactly 32 hexadecimal characters, never panic.
package id

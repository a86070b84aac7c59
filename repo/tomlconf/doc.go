// Package tomlconf is how every zenith configuration file is read: TOML
// decoded strictly over the defaults the caller fills in (an unknown key is
// an error that names it, a bad value one that names its line and key),
// and Duration, a time.Duration written as "10s" or "168h". The page
// server's config, the control plane's config.toml and node files, and
// the repository's tenant configs all use it.
//
// What it must never do: accept a key it does not know, or know any
// configuration of its own.
package tomlconf

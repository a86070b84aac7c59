package api

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The retention settings of a tenant that tenant_config changes, by their
// names in the tenant's config.toml.
const (
	// SettingGCHorizon is the bytes of WAL history below the last record
	// that GC keeps.
	SettingGCHorizon = "gc_horizon"
	// SettingPITRInterval is the time of history GC keeps for
	// point-in-time branches.
	SettingPITRInterval = "pitr_interval"
)

// TenantConfigColumns are the columns of tenant_config's answer: one row
// per setting of the tenant, its value as config.toml writes it (bytes as
// a number, durations as Go writes them, 24h0m0s).
var TenantConfigColumns = []string{"setting", "value"}

// TenantSetting is one of a tenant's settings, by its name in the
// tenant's config.toml: a row of TenantConfigColumns, an object of the
// HTTP API.
type TenantSetting struct {
	Name  string `json:"setting"`
	Value string `json:"value"`
}

// RetentionChange is a change of a tenant's retention, as the page
// service's tenant_config command and its HTTP twin take it; a nil field
// stays as it is.
type RetentionChange struct {
	GCHorizon    *int64
	PITRInterval *time.Duration
}

// Args renders the change as tenant_config's arguments, NAME=VALUE.
func (c RetentionChange) Args() []string {
	var args []string
	if c.GCHorizon != nil {
		args = append(args, SettingGCHorizon+"="+strconv.FormatInt(*c.GCHorizon, 10))
	}
	if c.PITRInterval != nil {
		args = append(args, SettingPITRInterval+"="+c.PITRInterval.String())
	}
	return args
}

// ParseArg parses one NAME=VALUE argument of tenant_config into c:
// gc_horizon takes bytes, pitr_interval a duration (24h, 30m); neither
// may be negative.
func (c *RetentionChange) ParseArg(arg string) error {
	name, v, ok := strings.Cut(arg, "=")
	if !ok {
		return fmt.Errorf("setting %q: want NAME=VALUE (%s=BYTES or %s=DURATION)", truncate(arg, 64), SettingGCHorizon, SettingPITRInterval)
	}
	switch name {
	case SettingGCHorizon:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("%s %q: want a number of bytes, 0 or more", name, truncate(v, 64))
		}
		c.GCHorizon = &n
	case SettingPITRInterval:
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("%s %q: want a duration such as 24h or 30m, 0s or more", name, truncate(v, 64))
		}
		c.PITRInterval = &d
	default:
		return fmt.Errorf("unknown setting %q: tenant_config changes %s and %s", truncate(name, 64), SettingGCHorizon, SettingPITRInterval)
	}
	return nil
}

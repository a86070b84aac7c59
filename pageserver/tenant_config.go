package pageserver

import (
	"context"
	"strconv"
	"time"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/tomlconf"
)

// tenantSettings lists a tenant's settings in config.toml's order.
func tenantSettings(c repo.TenantConfig) []api.TenantSetting {
	n := func(v int64) string { return strconv.FormatInt(v, 10) }
	return []api.TenantSetting{
		{Name: "checkpoint_distance", Value: n(c.CheckpointDistance)},
		{Name: "checkpoint_timeout", Value: time.Duration(c.CheckpointTimeout).String()},
		{Name: "compaction_target_size", Value: n(c.CompactionTargetSize)},
		{Name: "compaction_threshold", Value: strconv.Itoa(c.CompactionThreshold)},
		{Name: "image_creation_threshold", Value: strconv.Itoa(c.ImageCreationThreshold)},
		{Name: "compaction_idle_period", Value: time.Duration(c.CompactionIdlePeriod).String()},
		{Name: api.SettingGCHorizon, Value: n(c.GCHorizon)},
		{Name: api.SettingPITRInterval, Value: time.Duration(c.PITRInterval).String()},
	}
}

// configure applies a retention change to tenant t (validated by the
// repository, durable when it returns) and returns its settings.
func (t *tenant) configure(change api.RetentionChange) ([]api.TenantSetting, error) {
	c := t.tn.Config()
	if change.GCHorizon != nil || change.PITRInterval != nil {
		if change.GCHorizon != nil {
			c.GCHorizon = *change.GCHorizon
		}
		if change.PITRInterval != nil {
			c.PITRInterval = tomlconf.Duration(*change.PITRInterval)
		}
		if err := t.tn.SetConfig(c); err != nil {
			return nil, err
		}
	}
	return tenantSettings(c), nil
}

// gc flushes every timeline of t and runs garbage collection on it now,
// with the tenant's retention, rather than at the next GC period.
func (t *tenant) gc(ctx context.Context) error {
	for _, info := range t.tn.Timelines() {
		tl, err := t.tn.Timeline(info.ID)
		if err != nil {
			return err
		}
		if err := tl.Flush(ctx); err != nil {
			return err
		}
	}
	return t.tn.GC(ctx)
}

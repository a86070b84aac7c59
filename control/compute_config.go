package control

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// computeConfFile is the file zenith writes a node's settings to, included
// at the end of postgresql.conf so that it wins over the basebackup's.
const computeConfFile = "zenith.conf"

// computeSettings are the settings of a compute node (DESIGN.md section 7),
// before the user's own.
func computeSettings(n *Node, e *Env) [][2]string {
	s := [][2]string{
		{"listen_addresses", strings.Join(e.Config.Compute.ListenHosts(), ",")},
		{"port", fmt.Sprint(n.Port)},
		// The page server (or the safekeepers) receive WAL as physical
		// replication clients.
		{"wal_level", "replica"},
		{"max_wal_senders", "10"},
		{"max_replication_slots", "10"},
		// A receiver that fell behind can catch up from the compute.
		{"wal_keep_size", "512MB"},
		{"wal_log_hints", "off"},
		{"full_page_writes", "on"},
		// The data directory is never the durable copy: a commit is
		// acknowledged once the page server or a safekeeper quorum has
		// its WAL (synchronous_standby_names below), a node that did
		// not stop cleanly is rebuilt from the page server, and a clean
		// stop syncs the directory before it may be reused (StopNode).
		// Without the local fsyncs a commit waits for one fsync, the
		// standby's, instead of two in a row (docs/performance.md).
		{"fsync", "off"},
		{"track_commit_timestamp", "off"},
		{"zenith.tenant_id", n.Tenant.String()},
		{"zenith.timeline_id", n.Timeline.String()},
	}
	switch {
	case n.Replica:
		// No synchronous standbys: a replica commits nothing.
		// replicaSettings (written after these) make it a standby.
	case n.ReadOnly():
		s = append(s, [2]string{"default_transaction_read_only", "on"})
	case e.Config.Safekeepers.Count == 0:
		// A commit is acknowledged only once the page server has the WAL
		// durably: the compute's own disk is never the durable copy.
		s = append(s,
			[2]string{"synchronous_commit", "on"},
			[2]string{"synchronous_standby_names", "pageserver"})
	default:
		// ... or once a majority of the safekeepers has it.
		s = append(s,
			[2]string{"synchronous_commit", "on"},
			[2]string{"synchronous_standby_names", syncStandbyNames(e.Config.Safekeepers.Count)})
	}
	return s
}

// computeHBALoopback lets every local user in without a password over
// the socket and loopback, including replication connections (the page
// server's and the safekeepers' when they run here).
const computeHBALoopback = `# Written by zenith: trust on loopback only, unless config.toml [compute] says more.
local   all          all                 trust
host    all          all   127.0.0.1/32  trust
host    all          all   ::1/128       trust
local   replication  all                 trust
host    replication  all   127.0.0.1/32  trust
host    replication  all   ::1/128       trust
`

// computeHBA is a compute's pg_hba.conf: loopback, and when computes listen
// beyond it, the host's own addresses (samehost: the connection string on
// this host) and replication from the networks of compute.replication_from
// (a page server or safekeepers on other hosts). Anything else is refused.
func computeHBA(c ComputeConfig) string {
	var b strings.Builder
	b.WriteString(computeHBALoopback)
	if !c.LoopbackOnly() {
		b.WriteString("# compute.listen_addresses goes beyond loopback: this host's own addresses too\n")
		b.WriteString("host    all          all   samehost      trust\n")
		b.WriteString("host    replication  all   samehost      trust\n")
	}
	if len(c.ReplicationFrom) > 0 {
		b.WriteString("# compute.replication_from: the page server and safekeepers on other hosts\n")
		for _, n := range c.ReplicationFrom {
			fmt.Fprintf(&b, "host    replication  all   %-13s trust\n", n)
		}
	}
	return b.String()
}

// writeComputeConfig writes zenith.conf (zenith's settings, then the
// user's), includes it from postgresql.conf, and writes pg_hba.conf, in
// the data directory dir.
func writeComputeConfig(n *Node, e *Env, dir string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by zenith for compute node %s (tenant %s, branch %s); rewritten whenever\n# the data directory is rebuilt. Add settings with zenith pg create -c name=value.\n", n.Name, n.Tenant, n.Branch)
	settings := computeSettings(n, e)
	if n.Replica {
		rs, err := replicaSettings(n, e)
		if err != nil {
			return fmt.Errorf("compute node %s: %w", n.Name, err)
		}
		settings = append(settings, rs...)
	}
	for _, kv := range settings {
		fmt.Fprintf(&b, "%s = %s\n", kv[0], quoteConf(kv[1]))
	}
	if len(n.Settings) > 0 {
		b.WriteString("# zenith pg create -c\n")
		keys := make([]string, 0, len(n.Settings))
		for k := range n.Settings {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "%s = %s\n", k, quoteConf(n.Settings[k]))
		}
	}
	if err := os.WriteFile(filepath.Join(dir, computeConfFile), []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write compute config: %w", err)
	}
	conf := filepath.Join(dir, "postgresql.conf")
	old, err := os.ReadFile(conf)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("read postgresql.conf: %w", err)
	}
	include := "include '" + computeConfFile + "'\n"
	if !strings.Contains(string(old), include) {
		text := string(old)
		if text != "" && !strings.HasSuffix(text, "\n") {
			text += "\n"
		}
		if err := os.WriteFile(conf, []byte(text+"\n# zenith's settings, last so that they win\n"+include), 0o600); err != nil {
			return fmt.Errorf("write postgresql.conf: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "pg_hba.conf"), []byte(computeHBA(e.Config.Compute)), 0o600); err != nil {
		return fmt.Errorf("write pg_hba.conf: %w", err)
	}
	if n.Replica {
		// A hot standby (with hot_standby and primary_conninfo above).
		if err := os.WriteFile(filepath.Join(dir, "standby.signal"), nil, 0o600); err != nil {
			return fmt.Errorf("write standby.signal: %w", err)
		}
	}
	return nil
}

// quoteConf quotes a postgresql.conf value (any type may be quoted).
func quoteConf(v string) string {
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

// parseSettings parses -c name=value arguments.
func parseSettings(args []string) (map[string]string, error) {
	if len(args) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(args))
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("-c %q: want name=value, e.g. -c shared_buffers=256MB", a)
		}
		for _, c := range k {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.') {
				return nil, fmt.Errorf("-c %q: %q is not a PostgreSQL setting name", a, k)
			}
		}
		if strings.ContainsAny(v, "\n\r") {
			return nil, fmt.Errorf("-c %q: a value cannot span lines", a)
		}
		m[k] = v
	}
	return m, nil
}

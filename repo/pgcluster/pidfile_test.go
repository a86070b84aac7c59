package pgcluster

import (
	"strings"
	"testing"
)

// TestPidFileReady: waitReady's reading of postmaster.pid (as PostgreSQL
// 15 writes it, CreateLockFile and AddToDataDirLockFile).
func TestPidFileReady(t *testing.T) {
	const head = "4242\n/data\n1700000000\n5432\n/tmp\n127.0.0.1\n  5432001     32770\n"
	for _, tt := range []struct {
		name, content string
		want          bool
	}{
		{"ready", head + "ready   \n", true},
		{"hot standby", head + "standby \n", true},
		{"starting", head + "starting\n", false},
		{"stopping", head + "stopping\n", false},
		{"no status yet", head, false},
		{"another postmaster's", strings.Replace(head, "4242", "4243", 1) + "ready   \n", false},
		{"empty", "", false},
	} {
		if got := pidFileReady([]byte(tt.content), 4242); got != tt.want {
			t.Errorf("%s: pidFileReady = %v, want %v", tt.name, got, tt.want)
		}
	}
}

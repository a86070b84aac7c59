package control

import (
	"strings"
	"testing"
)

func TestInitLocal(t *testing.T) {
	three := func() Config {
		c := DefaultConfig()
		c.Pageserver.ListenPG = "127.0.0.2:64000"
		c.Safekeepers.Count = 3
		c.Safekeepers.Nodes = []SafekeeperNode{{ListenPG: "127.0.0.3:1"}, {ListenPG: "192.0.2.1:1"}, {ListenPG: "127.0.0.5:1"}}
		return c
	}
	for _, tc := range []struct {
		which, wantErr string
		ps             bool
		sks            []bool
	}{
		// 192.0.2.1 (TEST-NET-1) is no address of this host.
		{which: "auto", ps: true, sks: []bool{true, false, true}},
		{which: "all", ps: true, sks: []bool{true, true, true}},
		{which: "none", ps: false, sks: []bool{false, false, false}},
		{which: "pageserver,safekeeper-3", ps: true, sks: []bool{false, false, true}},
		{which: "safekeeper-4", wantErr: `"safekeeper-4" is not one of`},
	} {
		t.Run(tc.which, func(t *testing.T) {
			c := three()
			err := initLocal(tc.which, &c)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("initLocal(%q) = %v, want error containing %q", tc.which, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Pageserver.Local != tc.ps {
				t.Errorf("page server local = %v, want %v", c.Pageserver.Local, tc.ps)
			}
			for i, sk := range c.SafekeeperList() {
				if sk.Local != tc.sks[i] {
					t.Errorf("safekeeper %d local = %v, want %v", i+1, sk.Local, tc.sks[i])
				}
			}
		})
	}
}

func TestCheckComputeReachable(t *testing.T) {
	remote := DefaultConfig()
	remote.Safekeepers.Count = 1
	remote.Safekeepers.Nodes = []SafekeeperNode{{ListenPG: "10.0.0.2:5454", ListenHTTP: "10.0.0.2:7676"}}
	if err := checkComputeReachable(remote); err == nil || !strings.Contains(err.Error(), "--compute-host") {
		t.Errorf("a safekeeper on 10.0.0.2 and computes at 127.0.0.1: got %v, want an error naming --compute-host", err)
	}
	remote.Compute.AdvertiseHost = "10.0.0.1"
	if err := checkComputeReachable(remote); err != nil {
		t.Errorf("computes at 10.0.0.1: %v", err)
	}
	if err := checkComputeReachable(DefaultConfig()); err != nil {
		t.Errorf("the one-host default: %v", err)
	}
}

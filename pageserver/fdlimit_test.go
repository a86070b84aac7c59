package pageserver

import "testing"

func TestFitOpenFiles(t *testing.T) {
	tests := []struct {
		configured int
		nofile     uint64
		want       int
	}{
		{512, 0, 512},
		{512, 1 << 20, 512},
		{512, 2048, 512},
		{512, 1048, 512},
		{512, 1024, 502},
		{512, 64, 22},
		{512, 32, 6},
		{512, 8, minOpenLayerFiles},
		{3, 32, 3},
	}
	for _, tt := range tests {
		if got := FitOpenFiles(tt.configured, tt.nofile); got != tt.want {
			t.Errorf("FitOpenFiles(%d, %d) = %d, want %d", tt.configured, tt.nofile, got, tt.want)
		}
	}
}

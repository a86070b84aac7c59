package lazyfs

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestStartSetFile reads start sets back: files in the order first
// read, blocks bounded, a malformed line an error that names it.
func TestStartSetFile(t *testing.T) {
	keys := []startKey{{"global/1262", 0}, {"base/5/1259", 0}, {"global/1262", 1}, {"base/5/1259", 7}, {"base/5/2662", 3}}
	for _, tc := range []struct {
		name       string
		text       string // written as is; empty: writeStartSet(keys)
		limit      int
		wantFiles  []string
		wantBlocks map[string][]uint32
		wantErr    string
	}{
		{name: "all", limit: 100, wantFiles: []string{"global/1262", "base/5/1259", "base/5/2662"},
			wantBlocks: map[string][]uint32{"global/1262": {0, 1}, "base/5/1259": {0, 7}, "base/5/2662": {3}}},
		{name: "bounded", limit: 3, wantFiles: []string{"global/1262", "base/5/1259"},
			wantBlocks: map[string][]uint32{"global/1262": {0, 1}, "base/5/1259": {0}}},
		{name: "no block", text: "global/1262 0\nbase/5/1259\n", limit: 10, wantErr: `line 2: want "PATH BLOCK", got "base/5/1259"`},
		{name: "bad block", text: "global/1262 x\n", limit: 10, wantErr: `line 1: want "PATH BLOCK", got "global/1262 x"`},
		{name: "no path", text: " 4\n", limit: 10, wantErr: `line 1: want "PATH BLOCK"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sets", "timeline")
			if tc.text == "" {
				if err := writeStartSet(path, keys); err != nil {
					t.Fatal(err)
				}
			} else {
				os.MkdirAll(filepath.Dir(path), 0o700)
				if err := os.WriteFile(path, []byte(tc.text), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			files, blocks, err := readStartSet(path, tc.limit)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(files, tc.wantFiles) || !reflect.DeepEqual(blocks, tc.wantBlocks) {
				t.Fatalf("read %v %v, want %v %v", files, blocks, tc.wantFiles, tc.wantBlocks)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		files, _, err := readStartSet(filepath.Join(t.TempDir(), "none"), 10)
		if err != nil || files != nil {
			t.Fatalf("a missing start set: %v %v, want none and no error", files, err)
		}
	})
}

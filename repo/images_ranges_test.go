package repo

import (
	"fmt"
	"testing"

	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// TestSubtractRanges checks the key range arithmetic of the idle
// trigger's "never imaged" ranges on blocks of one relation.
func TestSubtractRanges(t *testing.T) {
	b := func(n uint32) key.Key {
		return key.RelBlock(pgdata.RelFileNode{SpcNode: 1663, DbNode: 5, RelNode: 16384}, pgdata.ForkMain, n)
	}
	r := func(s, e uint32) key.Range { return key.Range{Start: b(s), End: b(e)} }
	tests := []struct {
		name   string
		a, sub []key.Range
		want   []key.Range
	}{
		{"nothing taken", []key.Range{r(0, 10)}, nil, []key.Range{r(0, 10)}},
		{"all taken", []key.Range{r(2, 5)}, []key.Range{r(0, 10)}, nil},
		{"middle taken", []key.Range{r(0, 10)}, []key.Range{r(3, 5)}, []key.Range{r(0, 3), r(5, 10)}},
		{"ends taken", []key.Range{r(0, 10)}, []key.Range{r(8, 12), r(0, 2)}, []key.Range{r(2, 8)}},
		{"overlapping inputs merged", []key.Range{r(5, 10), r(0, 6), r(10, 12)}, []key.Range{r(11, 20)}, []key.Range{r(0, 11)}},
		{"touching taken ranges", []key.Range{r(0, 10)}, []key.Range{r(2, 4), r(4, 6)}, []key.Range{r(0, 2), r(6, 10)}},
		{"disjoint", []key.Range{r(0, 2), r(8, 9)}, []key.Range{r(3, 7)}, []key.Range{r(0, 2), r(8, 9)}},
		{"empty ranges dropped", []key.Range{r(4, 4), r(1, 3)}, []key.Range{r(0, 0)}, []key.Range{r(1, 3)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := subtractRanges(tt.a, tt.sub)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("subtractRanges(%v, %v)\n= %v\nwant %v", tt.a, tt.sub, got, tt.want)
			}
		})
	}
}

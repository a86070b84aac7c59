package layermap

import (
	"flag"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/layer"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// fake is a layer that only has a description.
type fake struct {
	name string
	d    layer.Desc
}

func (f *fake) Desc() layer.Desc { return f.d }
func (f *fake) Collect(key.Key, layer.LSNRange, *layer.ReconstructState) error {
	return nil
}

func k(n byte) key.Key { return key.Key{1, n} }

func delta(name string, ks, ke byte, start, end pgdata.LSN) *fake {
	return &fake{name, layer.Desc{Kind: layer.Delta, Keys: key.Range{Start: k(ks), End: k(ke)}, LSNs: layer.LSNRange{Start: start, End: end}}}
}

func image(name string, ks, ke byte, lsn pgdata.LSN) *fake {
	return &fake{name, layer.ImageDesc(key.Range{Start: k(ks), End: k(ke)}, lsn)}
}

func l0(name string, start, end pgdata.LSN) *fake {
	return &fake{name, layer.Desc{Kind: layer.Delta, Keys: key.All, LSNs: layer.LSNRange{Start: start, End: end}}}
}

// walk performs the reads of key n at LSN lsn and names the layers visited
// with the LSN ranges read from each.
func walk(m *Map, n byte, lsn pgdata.LSN) []string {
	var out []string
	end := lsn + 1
	for {
		l, floor, ok := m.Search(k(n), end)
		if !ok {
			return out
		}
		out = append(out, l.(*fake).name+layer.LSNRange{Start: floor, End: end}.String())
		if l.Desc().Kind == layer.Image {
			return out
		}
		end = floor
	}
}

func TestSearch(t *testing.T) {
	m := New(
		image("img0", 0, 100, 0x10),
		delta("a", 0, 50, 0x11, 0x40),
		delta("b", 50, 100, 0x11, 0x40),
		image("img1", 0, 50, 0x30), // inside delta a's range
		l0("l0", 0x40, 0x50),
		l0("top", 0x50, 0x60),
	)
	tests := []struct {
		n    byte
		lsn  pgdata.LSN
		want []string
	}{
		{10, 0x5F, []string{"top[0/50, 0/60)", "l0[0/40, 0/50)", "a[0/31, 0/40)", "img1[0/30, 0/31)"}},
		{60, 0x5F, []string{"top[0/50, 0/60)", "l0[0/40, 0/50)", "b[0/11, 0/40)", "img0[0/10, 0/11)"}},
		{10, 0x30, []string{"img1[0/30, 0/31)"}},
		{10, 0x2F, []string{"a[0/11, 0/30)", "img0[0/10, 0/11)"}},
		{10, 0x45, []string{"l0[0/40, 0/46)", "a[0/31, 0/40)", "img1[0/30, 0/31)"}},
		{60, 0x10, []string{"img0[0/10, 0/11)"}},
		{60, 0x0F, nil},
		{200, 0x5F, []string{"top[0/50, 0/60)", "l0[0/40, 0/50)"}},
	}
	for _, tt := range tests {
		got := walk(m, tt.n, tt.lsn)
		if len(got) != len(tt.want) {
			t.Errorf("walk(%d, %v) = %v, want %v", tt.n, tt.lsn, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("walk(%d, %v) = %v, want %v", tt.n, tt.lsn, got, tt.want)
				break
			}
		}
	}
}

func TestWithAndOverlapping(t *testing.T) {
	a, b, c := l0("a", 0x10, 0x20), l0("b", 0x20, 0x30), delta("c", 0, 50, 0x10, 0x30)
	m := New(a, b)
	m2 := m.With([]layer.Layer{c}, []layer.Layer{a, b})
	if m.Len() != 2 || m2.Len() != 1 || m2.Layers()[0] != c {
		t.Fatalf("With: old map has %d layers (want 2), new has %v (want [c])", m.Len(), m2.Layers())
	}
	got := m.Overlapping(key.Range{Start: k(0), End: k(1)}, layer.LSNRange{Start: 0x1F, End: 0x21})
	if len(got) != 2 {
		t.Errorf("Overlapping = %d layers, want 2", len(got))
	}
	if got := m2.Overlapping(key.Range{Start: k(60), End: k(70)}, layer.LSNRange{Start: 0, End: 0x100}); len(got) != 0 {
		t.Errorf("Overlapping outside c's keys = %v, want none", got)
	}
}

func TestCoveredByImages(t *testing.T) {
	m := New(
		image("i1", 0, 40, 0x30),
		image("i2", 40, 80, 0x38),
		image("i3", 60, 100, 0x50),
		delta("d", 0, 100, 0x10, 0x30),
	)
	tests := []struct {
		ks, ke byte
		lo, hi pgdata.LSN
		want   bool
	}{
		{0, 80, 0x30, 0x40, true},    // two images at different LSNs
		{0, 100, 0x30, 0x40, false},  // 80-100 only at 0/50
		{0, 100, 0x30, 0x50, true},   // all three
		{0, 100, 0x31, 0x50, false},  // i1 too old
		{10, 20, 0x30, 0x30, true},   // inside one image
		{70, 90, 0x38, 0x50, true},   // i2 and i3 overlap
		{0, 40, 0x00, 0x2F, false},   // i1 too new
		{40, 100, 0x00, 0x100, true}, // the delta never covers
	}
	for _, tt := range tests {
		r := key.Range{Start: k(tt.ks), End: k(tt.ke)}
		if got := m.CoveredByImages(r, tt.lo, tt.hi); got != tt.want {
			t.Errorf("CoveredByImages(%d-%d, %v, %v) = %v, want %v", tt.ks, tt.ke, tt.lo, tt.hi, got, tt.want)
		}
	}
}

var seedFlag = flag.Int64("seed", 0, "seed of TestSearchMatchesLinear (0: random)")

// searchLinear is Search without the key index: a walk over every layer
// of the map, as Search was before the index. The index must not change
// a single answer.
func searchLinear(m *Map, k key.Key, end pgdata.LSN) (l layer.Layer, floor pgdata.LSN, ok bool) {
	var best entry
	var bestEnd pgdata.LSN
	for _, e := range m.entries {
		d := e.desc
		if d.LSNs.Start >= end || !d.Keys.Contains(k) {
			continue
		}
		eff := min(d.LSNs.End, end)
		if !ok {
			best, bestEnd, ok = e, eff, true
			continue
		}
		if eff < bestEnd {
			return best.l, max(best.desc.LSNs.Start, eff), true
		}
		if d.Kind == layer.Image && best.desc.Kind != layer.Image {
			best = e
		}
	}
	if !ok {
		return nil, 0, false
	}
	return best.l, best.desc.LSNs.Start, true
}

// TestSearchMatchesLinear compares Search with searchLinear on random
// layer sets: L0 deltas of every key, key-partitioned deltas and images,
// overlapping or not, empty key ranges, ranges that share bounds; each
// searched at every key and LSN of its range and just outside.
func TestSearchMatchesLinear(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (replay: go test ./repo/layermap -run TestSearchMatchesLinear -seed %d)", seed, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	for round := range 300 {
		var ls []layer.Layer
		n := rng.IntN(40)
		for i := range n {
			name := strconv.Itoa(i)
			start := pgdata.LSN(rng.IntN(64))
			ks, ke := byte(rng.IntN(20)), byte(rng.IntN(20))
			if ks > ke && rng.IntN(4) > 0 {
				ks, ke = ke, ks
			}
			switch rng.IntN(4) {
			case 0:
				ls = append(ls, l0(name, start, start+1+pgdata.LSN(rng.IntN(8))))
			case 1:
				ls = append(ls, image(name, ks, ke, start))
			default:
				ls = append(ls, delta(name, ks, ke, start, start+1+pgdata.LSN(rng.IntN(16))))
			}
		}
		m := New(ls...)
		if rng.IntN(3) == 0 && n > 0 {
			// A map made by With, as flushes and compactions make them.
			m = m.With([]layer.Layer{l0("new", 80, 90)}, ls[:rng.IntN(n)])
		}
		for kn := range 22 {
			for end := pgdata.LSN(0); end <= 92; end++ {
				for _, kk := range []key.Key{k(byte(kn)), key.Min, key.Max, {1, byte(kn), 5}} {
					gl, gf, gok := m.Search(kk, end)
					wl, wf, wok := searchLinear(m, kk, end)
					if gl != wl || gf != wf || gok != wok {
						t.Fatalf("round %d, seed %d: Search(%v, %v) = %v, %v, %v; linear search: %v, %v, %v",
							round, seed, kk, end, gl, gf, gok, wl, wf, wok)
					}
				}
			}
		}
	}
}

// BenchmarkSearch walks a key's layers from the top, as a read does, in a
// map of 35 small L0 layers over 100 key-partitioned deltas and 100 images
// (the shape the page server's scans met): with the key index and with
// the linear search it replaced.
//
//	go test -run '^$' -bench Search ./repo/layermap/
func BenchmarkSearch(b *testing.B) {
	var ls []layer.Layer
	for i := range 100 {
		ls = append(ls, image("img", byte(2*i), byte(2*i+2), 10), delta("d", byte(2*i), byte(2*i+2), 11, 50))
	}
	for i := range 35 {
		ls = append(ls, l0("l0", pgdata.LSN(50+i), pgdata.LSN(51+i)))
	}
	m := New(ls...)
	for _, search := range []struct {
		name string
		fn   func(*Map, key.Key, pgdata.LSN) (layer.Layer, pgdata.LSN, bool)
	}{{"index", (*Map).Search}, {"linear", searchLinear}} {
		b.Run(search.name, func(b *testing.B) {
			visited := 0
			for i := 0; b.Loop(); i++ {
				kk := k(byte(i % 200))
				end := pgdata.LSN(90)
				for {
					l, floor, ok := search.fn(m, kk, end)
					if !ok {
						break
					}
					visited++
					if l.Desc().Kind == layer.Image {
						break
					}
					end = floor
				}
			}
			b.ReportMetric(float64(visited)/float64(b.N), "layers/read")
		})
	}
}

package layer

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// Kind is the kind of a layer.
type Kind uint8

// The kinds of layers.
const (
	Delta    Kind = 1
	Image    Kind = 2
	InMemory Kind = 3
)

func (k Kind) String() string {
	switch k {
	case Delta:
		return "delta"
	case Image:
		return "image"
	case InMemory:
		return "in-memory"
	}
	return fmt.Sprintf("kind%d", uint8(k))
}

// LSNRange is the half-open LSN range [Start, End).
type LSNRange struct {
	Start, End pgdata.LSN
}

// Contains reports whether lsn is in r.
func (r LSNRange) Contains(lsn pgdata.LSN) bool { return r.Start <= lsn && lsn < r.End }

func (r LSNRange) String() string { return fmt.Sprintf("[%v, %v)", r.Start, r.End) }

// Desc describes a layer: what it holds, not where.
type Desc struct {
	Kind Kind
	Keys key.Range
	// LSNs is the range of LSNs of the layer's values; an image layer at
	// LSN X has the range [X, X+1).
	LSNs LSNRange
}

// ImageDesc describes an image layer of keys at lsn.
func ImageDesc(keys key.Range, lsn pgdata.LSN) Desc {
	return Desc{Kind: Image, Keys: keys, LSNs: LSNRange{lsn, lsn + 1}}
}

// IsL0 reports whether d is a delta layer of the whole key space, as a
// flush of an in-memory layer writes (compaction rewrites these into
// deltas of smaller key ranges).
func (d Desc) IsL0() bool { return d.Kind == Delta && d.Keys == key.All }

func (d Desc) String() string {
	switch d.Kind {
	case Image:
		return fmt.Sprintf("image %v @%v", d.Keys, d.LSNs.Start)
	default:
		return fmt.Sprintf("%v %v %v", d.Kind, d.Keys, d.LSNs)
	}
}

// FileName is the name of the layer's file:
// <key start>-<key end>__<lsn start>-<lsn end> for a delta layer and
// <key start>-<key end>__<lsn> for an image layer, keys as 36 and LSNs as
// 16 hexadecimal digits.
func (d Desc) FileName() string {
	lsns := fmt.Sprintf("%016X-%016X", uint64(d.LSNs.Start), uint64(d.LSNs.End))
	if d.Kind == Image {
		lsns = fmt.Sprintf("%016X", uint64(d.LSNs.Start))
	}
	return d.Keys.Start.Hex() + "-" + d.Keys.End.Hex() + "__" + lsns
}

// ParseFileName parses a layer file name made by FileName. It returns an
// error for any other name.
func ParseFileName(name string) (Desc, error) {
	keys, lsns, ok := strings.Cut(name, "__")
	if !ok {
		return Desc{}, fmt.Errorf("not a layer file name: %q", name)
	}
	ks, ke, ok := strings.Cut(keys, "-")
	if !ok {
		return Desc{}, fmt.Errorf("not a layer file name: %q: no key range", name)
	}
	var d Desc
	var err error
	if d.Keys.Start, err = key.ParseHex(ks); err != nil {
		return Desc{}, fmt.Errorf("layer file name %q: %w", name, err)
	}
	if d.Keys.End, err = key.ParseHex(ke); err != nil {
		return Desc{}, fmt.Errorf("layer file name %q: %w", name, err)
	}
	if ls, le, delta := strings.Cut(lsns, "-"); delta {
		d.Kind = Delta
		if d.LSNs.Start, err = parseLSN(ls); err == nil {
			d.LSNs.End, err = parseLSN(le)
		}
	} else {
		d.Kind = Image
		d.LSNs.Start, err = parseLSN(lsns)
		d.LSNs.End = d.LSNs.Start + 1
	}
	if err != nil {
		return Desc{}, fmt.Errorf("layer file name %q: %w", name, err)
	}
	if d.Keys.Empty() || d.LSNs.Start >= d.LSNs.End {
		return Desc{}, fmt.Errorf("layer file name %q: empty key or LSN range", name)
	}
	return d, nil
}

func parseLSN(s string) (pgdata.LSN, error) {
	if len(s) != 16 {
		return 0, fmt.Errorf("LSN %q: want 16 hexadecimal digits", s)
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("LSN %q: %w", s, err)
	}
	return pgdata.LSN(v), nil
}

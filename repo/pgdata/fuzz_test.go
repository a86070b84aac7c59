package pgdata

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// update rewrites the fuzz targets' seed corpora under testdata/fuzz from
// the WAL samples: go test ./repo/pgdata -run TestFuzzSeeds -update
var update = flag.Bool("update", false, "rewrite the fuzz seed corpora from the WAL samples")

// FuzzDecodeRecord feeds arbitrary record bodies to DecodeRecord. The
// length and CRC are fixed up first, so the fuzzer explores the block
// headers rather than the checksum.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(makeRecord(RmgrHeap, 0, 0x1000, encodeBody([]testBlock{
		{id: 0, rel: &RelFileNode{1663, 5, 16384}, blk: 1, data: []byte("x"), image: make([]byte, 100),
			bimgInfo: BkpImageHasHole | BkpImageCompressPGLZ | BkpImageApply, holeOff: 40, holeLen: 10},
	}, 1, 2, []byte("main"))))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) < XLogRecordHeaderSize {
			if _, err := DecodeRecord(0x2000, raw); err == nil {
				t.Fatal("a record shorter than its header decoded")
			}
			return
		}
		binary.LittleEndian.PutUint32(raw, uint32(len(raw)))
		SetRecordCRC(raw)
		r, err := DecodeRecord(0x2000, raw)
		if err != nil {
			return
		}
		n := len(r.MainData)
		for i := range r.Blocks {
			b := &r.Blocks[i]
			n += len(b.Image) + len(b.Data)
			if b.HasImage {
				// Any error is fine; a panic or a wrong size is not.
				if page, err := b.PageImage(); err == nil && len(page) != BlockSize {
					t.Fatalf("PageImage returned %d bytes", len(page))
				}
			}
		}
		if n > len(raw)-XLogRecordHeaderSize || r.RecLen() > r.Header.TotLen {
			t.Fatalf("payloads of %d bytes in a %d-byte record (rec_len %d)", n, len(raw), r.RecLen())
		}
	})
}

// FuzzPageHeader parses and checks arbitrary page headers.
func FuzzPageHeader(f *testing.F) {
	long := XLogPageHeader{Magic: XLogPageMagic, Info: XLPLongHeader, TLI: 1, PageAddr: 2 << 24, SysID: 7, SegSize: 16 << 20, XLogBlockSize: XLogBlockSize}
	f.Add(long.Encode(nil), uint64(2<<24))
	f.Fuzz(func(t *testing.T, b []byte, addr uint64) {
		h, err := ParseXLogPageHeader(b)
		if err != nil {
			return
		}
		if h.Check(LSN(addr)&^(XLogBlockSize-1), 16<<20, h.TLI) == nil && h.Size() > len(b) {
			t.Fatalf("a %d-byte header checked out of %d bytes", h.Size(), len(b))
		}
		back, err := ParseXLogPageHeader(h.Encode(nil))
		if err != nil || back != h {
			t.Fatalf("Encode does not round-trip: %+v -> %+v, %v", h, back, err)
		}
	})
}

// FuzzWALDecoder feeds arbitrary bytes, in chunks of arbitrary size,
// through the streaming decoder.
func FuzzWALDecoder(f *testing.F) {
	w := newWALBuilder(1<<20, 1<<20)
	w.record(RmgrXLOG, XLogNoop, mainData([]byte("x")))
	w.record(RmgrLogicalMessage, 0, mainData(make([]byte, 9000)))
	f.Add(w.buf, uint64(1<<20), uint16(100))
	f.Fuzz(func(t *testing.T, data []byte, start uint64, chunk uint16) {
		d := NewWALDecoder(LSN(start), 1<<20)
		last := LSN(0)
		for len(data) > 0 {
			n := min(int(chunk)%(3*XLogBlockSize)+1, len(data))
			d.Feed(data[:n])
			data = data[n:]
			for {
				rec, err := d.Next()
				if err != nil {
					var eow *EndOfWALError
					if errors.As(err, &eow) {
						if _, again := d.Next(); again != err {
							t.Fatalf("after %v, Next returned %v", err, again)
						}
						return
					}
					if !errors.Is(err, ErrNeedMoreWAL) {
						t.Fatalf("Next: %v", err)
					}
					break
				}
				if rec.LSN < last || rec.EndLSN <= rec.LSN || int(rec.Header.TotLen) != len(rec.Raw) {
					t.Fatalf("record at %s (end %s, %d bytes, xl_tot_len %d) after one ending at %s",
						rec.LSN, rec.EndLSN, len(rec.Raw), rec.Header.TotLen, last)
				}
				last = rec.EndLSN
			}
		}
	})
}

// TestFuzzSeeds checks that the committed seed corpora are there, and with
// -update rewrites them from the WAL samples: real records of every
// compression, and real WAL streams from a segment start and from mid-page.
func TestFuzzSeeds(t *testing.T) {
	seeds := map[string][][]any{}
	for _, name := range []string{"off", "pglz", "lz4", "zstd"} {
		dir := filepath.Join("testdata", "wal", name)
		recs, _ := readAllWAL(t, []string{dir}, WALReadOptions{})
		// One record of each rmgr, and one with a compressed image of
		// each method.
		seen := map[RmgrID]bool{}
		compressed := false
		for _, r := range recs {
			switch {
			case name == "off" && !seen[r.Rmgr()] && len(r.Raw) < 2000:
				seen[r.Rmgr()] = true
			case name != "off" && !compressed && r.FPILen() > 0 && len(r.Raw) < 2000 && r.Blocks[0].Compressed():
				compressed = true
			default:
				continue
			}
			seeds["FuzzDecodeRecord"] = append(seeds["FuzzDecodeRecord"], []any{r.Raw})
		}
		if name == "off" {
			start := recs[0].LSN - LSN(recs[0].LSN.PageOffset())
			stream, _ := sampleStream(t, dir, start)
			mid := recs[len(recs)/2].LSN
			seeds["FuzzWALDecoder"] = append(seeds["FuzzWALDecoder"],
				[]any{stream[:2*XLogBlockSize], uint64(start), uint16(5000)},
				[]any{stream[mid-start : mid-start+XLogBlockSize+2000], uint64(mid), uint16(300)})
			for _, page := range []int{0, 1} {
				seeds["FuzzPageHeader"] = append(seeds["FuzzPageHeader"],
					[]any{stream[page*XLogBlockSize : page*XLogBlockSize+XLogLongPageHeaderSize], uint64(start) + uint64(page*XLogBlockSize)})
			}
		}
	}
	for target, inputs := range seeds {
		dir := filepath.Join("testdata", "fuzz", target)
		if !*update {
			if files, _ := filepath.Glob(filepath.Join(dir, "seed-*")); len(files) != len(inputs) {
				t.Errorf("%s: %d seed files, want %d (run with -update)", dir, len(files), len(inputs))
			}
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		old, _ := filepath.Glob(filepath.Join(dir, "seed-*"))
		for _, f := range old {
			os.Remove(f)
		}
		for i, in := range inputs {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), corpusFile(in...), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// corpusFile encodes a fuzz input in the "go test fuzz v1" format.
func corpusFile(vals ...any) []byte {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, v := range vals {
		switch v := v.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		default:
			fmt.Fprintf(&b, "%T(%v)\n", v, v)
		}
	}
	return b.Bytes()
}

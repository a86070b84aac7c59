package lazyfs

import "testing"

// testFile is a lazy file of n blocks with only what readsAhead uses.
func testFile(n uint32) *lazyFile {
	return &lazyFile{remote: n, state: make([]byte, n), touched: make([]bool, n)}
}

// TestReadsAheadSparse: a run of reads one block in six, ascending (an
// index-only scan's heap fetches after TPC-B), reads ahead only while it
// is too short to judge, then fetches what it reads; a dense run after
// it reads ahead again.
func TestReadsAheadSparse(t *testing.T) {
	lf := testFile(8192)
	last := uint32(0)
	for b := uint32(1); b < 4096; b += 6 {
		if lf.readsAhead(b, b+1) {
			last = b
		}
	}
	if last == 0 || last > seqWindow+densitySpan+6 {
		t.Errorf("a run of reads one block in six read ahead up to block %d; want only its first %d blocks", last, seqWindow+densitySpan)
	}
	// Then the kernel's read-ahead of a scan: 128 blocks at once.
	var dense []uint32
	for b := uint32(4096); b < 8192; b += 128 {
		if lf.readsAhead(b, b+128) {
			dense = append(dense, b)
		}
	}
	if n := len(dense); n < 4096/128-2 {
		t.Errorf("a dense run of 128-block reads after a sparse one read ahead %d times of %d (at %v)", n, 4096/128, dense)
	}
}

// TestReadsAheadDense: a run of single-block reads that reads every
// block, though out of order (parallel workers, concurrent requests),
// reads ahead throughout; so does a run over blocks the compute wrote.
func TestReadsAheadDense(t *testing.T) {
	lf := testFile(8192)
	for b := uint32(16); b < 8192; b += 16 {
		// Blocks b-16..b-1 in an order that jumps back and forth.
		for i := uint32(0); i < 16; i++ {
			blk := b - 16 + (i*7)%16
			if blk == 0 {
				continue
			}
			if !lf.readsAhead(blk, blk+1) {
				t.Fatalf("a dense run of reads, out of order, stopped reading ahead at block %d", blk)
			}
		}
	}

	lf = testFile(4096)
	for b := uint32(0); b < 4096; b++ {
		if b%2 == 0 {
			// Written by the compute: its reads hit the kernel's cache.
			lf.touch(b, b+1)
		}
	}
	for b := uint32(1); b < 4096; b += 2 {
		if !lf.readsAhead(b, b+1) {
			t.Fatalf("a run of reads of every block the compute did not write stopped reading ahead at block %d", b)
		}
	}
}

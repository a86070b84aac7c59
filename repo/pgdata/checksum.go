package pgdata

import "encoding/binary"

// A cluster initialized with data checksums (initdb -k, pg_control's
// data_checksum_version) keeps in every initialized page's pd_checksum
// the value PageChecksum computes, and PostgreSQL checks it on every
// read from disk (PageIsVerifiedExtended): a page that fails is an
// "invalid page" ERROR. PostgreSQL sets it only when a buffer is written
// out, so a page rebuilt by WAL redo or taken from a full-page image
// carries a stale one; whoever hands such a page to a compute sets it
// (SetPageChecksum).

// checksumLanes is how many FNV-1a-like sums run side by side over the
// page, each over every 32nd 32-bit word (N_SUMS in checksum_impl.h).
const checksumLanes = 32

const fnvPrime = 16777619

// checksumBaseOffsets start each lane in a different state
// (checksumBaseOffsets in PostgreSQL's storage/checksum_impl.h).
var checksumBaseOffsets = [checksumLanes]uint32{
	0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A,
	0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
	0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA,
	0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
	0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE,
	0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
	0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E,
	0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
}

// pdChecksumOffset is where pd_checksum sits in the page header.
const pdChecksumOffset = 8

// PageChecksum is pg_checksum_page: the checksum of an initialized page
// of BlockSize bytes that is block blk of its relation fork (counted
// from the fork's start, not the segment's), with its pd_checksum taken
// as zero. The page's words are read little-endian: the layout of the
// machines PostgreSQL and zenith run on here.
func PageChecksum(page []byte, blk BlockNumber) uint16 {
	sums := checksumBaseOffsets
	mix := func(lane int, v uint32) {
		t := sums[lane] ^ v
		sums[lane] = t*fnvPrime ^ t>>17
	}
	for off := 0; off < BlockSize; off += 4 * checksumLanes {
		for lane := 0; lane < checksumLanes; lane++ {
			w := off + 4*lane
			v := binary.LittleEndian.Uint32(page[w:])
			if w == pdChecksumOffset {
				v &^= 0xFFFF // pd_checksum, the word's low half, counts as zero
			}
			mix(lane, v)
		}
	}
	// Two rounds of zeros for more mixing, as PostgreSQL does.
	for range 2 {
		for lane := 0; lane < checksumLanes; lane++ {
			mix(lane, 0)
		}
	}
	var sum uint32
	for _, s := range sums {
		sum ^= s
	}
	sum ^= uint32(blk) // a page written at the wrong place fails
	return uint16(sum%65535 + 1)
}

// SetPageChecksum sets the pd_checksum of block blk's page in place; an
// uninitialized page (PageIsNew) has no checksum and is left as it is.
func SetPageChecksum(page []byte, blk BlockNumber) {
	if PageIsNew(page) {
		return
	}
	binary.LittleEndian.PutUint16(page[pdChecksumOffset:], PageChecksum(page, blk))
}

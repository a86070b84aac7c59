package pgdata

import "errors"

// errPGLZCorrupt is returned for pglz data that does not decode to exactly
// the expected number of bytes.
var errPGLZCorrupt = errors.New("pglz: compressed data is corrupt")

// pglzDecompress decodes PostgreSQL's pglz format (common/pg_lzcompress.c)
// from src into all of dst, and fails unless src decodes to exactly
// len(dst) bytes using all of src (pglz_decompress with check_complete).
//
// The format: a control byte governs the next eight items, least
// significant bit first. A clear bit is one literal byte. A set bit is a
// back-reference tag of two or three bytes: the first byte's low nibble
// is the length minus 3 (0xF meaning a third byte holds the length minus
// 18), its high nibble and the second byte are a 12-bit offset back into
// the output. A reference may overlap the bytes it produces, which
// repeats a short pattern.
func pglzDecompress(src, dst []byte) error {
	sp, dp := 0, 0
	for sp < len(src) && dp < len(dst) {
		ctrl := src[sp]
		sp++
		for bit := 0; bit < 8 && sp < len(src) && dp < len(dst); bit++ {
			if ctrl&(1<<bit) == 0 {
				dst[dp] = src[sp]
				dp++
				sp++
				continue
			}
			if sp+2 > len(src) {
				return errPGLZCorrupt
			}
			n := int(src[sp]&0x0F) + 3
			off := int(src[sp]&0xF0)<<4 | int(src[sp+1])
			sp += 2
			if n == 18 {
				if sp >= len(src) {
					return errPGLZCorrupt
				}
				n += int(src[sp])
				sp++
			}
			if off == 0 || off > dp {
				return errPGLZCorrupt
			}
			if n > len(dst)-dp {
				n = len(dst) - dp
			}
			// Byte by byte where the reference overlaps its output, which
			// is what repeats the pattern.
			if off >= n {
				copy(dst[dp:dp+n], dst[dp-off:])
			} else {
				for i := 0; i < n; i++ {
					dst[dp+i] = dst[dp-off+i]
				}
			}
			dp += n
		}
	}
	if dp != len(dst) || sp != len(src) {
		return errPGLZCorrupt
	}
	return nil
}

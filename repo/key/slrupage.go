package key

// SLRUPage decodes an SLRU page key (made by SLRUPage); ok is false for
// any other key, segment sizes included.
func (k Key) SLRUPage() (s SLRU, segNo, blk uint32, ok bool) {
	if k[0] != kindSLRU || k.f4() != 0 || k[13] != 1 || k.f6() == sizeBlock || k.f2() >= uint32(len(slruNames)) {
		return 0, 0, 0, false
	}
	return SLRU(k.f2()), k.f3(), k.f6(), true
}

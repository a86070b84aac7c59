package pgdata

import (
	"encoding/binary"
	"hash/crc32"
)

// xlCRCOffset is offsetof(XLogRecord, xl_crc): the header bytes before the
// CRC, which the CRC covers last.
const xlCRCOffset = 20

// RecordCRC computes xl_crc of a whole record (header included) the way
// XLogInsert does and ValidXLogRecord checks it: CRC-32C over everything
// after the 24-byte header, then over the header's first 20 bytes. raw
// must hold at least the header.
func RecordCRC(raw []byte) uint32 {
	crc := crc32.Update(0, castagnoli, raw[XLogRecordHeaderSize:])
	return crc32.Update(crc, castagnoli, raw[:xlCRCOffset])
}

// SetRecordCRC stores RecordCRC(raw) in raw's xl_crc field, for writers
// of WAL records.
func SetRecordCRC(raw []byte) {
	binary.LittleEndian.PutUint32(raw[xlCRCOffset:], RecordCRC(raw))
}

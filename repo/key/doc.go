// Package key defines the repository's keys: fixed-width (18 bytes),
// big-endian, so that byte order is tuple order and a range of keys is a
// range of bytes. Every piece of a PostgreSQL cluster the page server
// stores has a key: relation blocks and sizes, the list of databases and of
// each database's relations, relmapper files, SLRU pages and segment
// lists, two-phase state files, pg_control and the checkpoint, and small
// auxiliary files.
//
// A key is six fields, written one after the other:
//
//	byte 0   bytes 1-4  bytes 5-8  bytes 9-12  byte 13  bytes 14-17
//	field1   field2     field3     field4      field5   field6
//
//	0x00     0          0          0           0        0          database directory
//	0x00     0          0          0           0        1          tablespace directory
//	0x01     spcnode    dbnode     0           0        0          relmapper file of a database (dbnode 0: global)
//	0x01     spcnode    dbnode     0           0        1          relation directory of a database
//	0x01     spcnode    dbnode     relnode     fork     blkno      relation block
//	0x01     spcnode    dbnode     relnode     fork     FFFFFFFF   relation size (blocks in the fork)
//	0x02     slru       0          0           0        0          SLRU segment directory
//	0x02     slru       segno      0           1        blkno      SLRU page
//	0x02     slru       segno      0           1        FFFFFFFF   SLRU segment size
//	0x03     0          0          0           0        0          two-phase directory
//	0x03     0          0          0           1        xid        two-phase state file (pg_twophase)
//	0x04     0          0          0           0        0          pg_control
//	0x04     0          0          0           0        1          checkpoint
//	0x05     first 17 bytes of SHA-256 of the path          auxiliary file
//
// A database's keys (relmapper, relation directory, every block and size of
// its relations) are contiguous, and a relation's size key sorts right
// after its last block, so dropping a database or a relation is one key
// range. Relation node 0 and block number FFFFFFFF are never real
// (InvalidOid, InvalidBlockNumber), which is what makes the metadata keys
// distinct from blocks. Max is an exclusive upper bound that no stored key
// reaches (field1 0xFF).
//
// The package only names keys; what the value of each key holds is the
// page server's business (package value describes how values are encoded).
package key

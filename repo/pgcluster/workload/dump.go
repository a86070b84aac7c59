package workload

import "regexp"

// locationLine matches pg_dumpall's line that creates TablespaceLocation.
var locationLine = regexp.MustCompile(`(?m)^(CREATE TABLESPACE ` + TablespaceLocation + ` OWNER \S+ LOCATION )'[^']*';$`)

// MaskTablespaceLocation replaces, in pg_dumpall's output, the location of
// TablespaceLocation with "LOCATION": servers that hold the same data
// differ there when one's data directory was rebuilt elsewhere and keeps
// the tablespace in a directory of its own.
func MaskTablespaceLocation(dump string) string {
	return locationLine.ReplaceAllString(dump, "${1}'LOCATION';")
}

// Package ids abbreviates the long identifiers people read in logs,
// messages and tables: container and image IDs, commit SHAs. Twelve
// characters, as `docker ps` and `git log --abbrev=12` show them, tell
// them apart on one host and in one repository.
package ids

// Short is id cut to twelve characters; a shorter id is returned whole.
func Short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Package printable is the rule of which characters text that people read
// back may hold: a tenant in a log line, an extension on a screen. The
// domain and auth both apply it; it is the subject of neither.
package printable

import "unicode"

// Invisible reports whether r is a format character that changes how
// text around it is shown without showing itself: zero-width characters
// and marks (U+200B-U+200F), bidirectional embeddings, overrides and
// isolates (U+202A-U+202E, U+2066-U+2069), and the byte order mark
// (U+FEFF). Text that people read back must not hold them: they can make
// two values look alike or reorder what a reader sees (CVE-2021-42574).
func Invisible(r rune) bool {
	return r >= 0x200B && r <= 0x200F || r >= 0x202A && r <= 0x202E || r >= 0x2066 && r <= 0x2069 || r == 0xFEFF
}

// Rune reports whether r may be held by text phonesd stores: neither a
// control character (C0, DEL, C1) nor one of the Invisible format
// characters.
func Rune(r rune) bool {
	return !unicode.IsControl(r) && !Invisible(r)
}

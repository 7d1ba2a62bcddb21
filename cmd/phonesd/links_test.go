package main

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// TestDocLinks follows every relative link of the repository's Markdown
// files (README.md, api/README.md, docs/ and the rest): the file it names
// must exist in the repository, and the heading its #fragment names must be
// in that Markdown file, as GitHub spells a heading's anchor. Links inside
// code are examples, not links; links with a scheme leave the repository.
func TestDocLinks(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "data" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".md") {
			rel, err := filepath.Rel(root, p)
			files = append(files, filepath.ToSlash(rel))
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]map[string]bool{} // by file, read once
	anchorsOf := func(file string) map[string]bool {
		if a, ok := anchors[file]; ok {
			return a
		}
		text, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			t.Fatal(err)
		}
		anchors[file] = headingAnchors(string(text))
		return anchors[file]
	}
	links := 0
	for _, file := range files {
		text, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range relativeLinks(string(text)) {
			links++
			target, fragment, _ := strings.Cut(l.target, "#")
			resolved := file
			if target != "" {
				resolved = path.Join(path.Dir(file), target)
				if resolved == ".." || strings.HasPrefix(resolved, "../") {
					t.Errorf("%s:%d: link %q leaves the repository", file, l.line, l.target)
					continue
				}
				if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(resolved))); err != nil {
					t.Errorf("%s:%d: link %q: no file %s", file, l.line, l.target, resolved)
					continue
				}
			}
			if fragment != "" && strings.HasSuffix(resolved, ".md") && !anchorsOf(resolved)[fragment] {
				t.Errorf("%s:%d: link %q: %s has no heading with the anchor #%s", file, l.line, l.target, resolved, fragment)
			}
		}
	}
	if !anchorsOf("README.md")["configuration"] || links < 20 {
		t.Fatalf("checked %d links in %v; the walk missed the documentation", links, files)
	}
}

// link is a link of a Markdown file, by its line.
type link struct {
	target string
	line   int
}

var (
	fence      = regexp.MustCompile("^ {0,3}(```|~~~)")
	codeSpan   = regexp.MustCompile("`+[^`]*`+")
	markdownTo = regexp.MustCompile(`!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)`)
	hasScheme  = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)
	heading    = regexp.MustCompile(`^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$`)
	htmlID     = regexp.MustCompile(`<a\s+(?:id|name)="([^"]+)"`)
	linkText   = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
)

// relativeLinks returns the links of a Markdown text that stay in the
// repository: neither in code nor with a scheme (https:, mailto:). A link
// may run over lines, as a wrapped paragraph has it.
func relativeLinks(text string) []link {
	var prose strings.Builder // the text with code blanked out, lines kept
	inFence := false
	for line := range strings.SplitSeq(text, "\n") {
		if fence.MatchString(line) {
			inFence = !inFence
			line = ""
		}
		if inFence {
			line = ""
		}
		prose.WriteString(line + "\n")
	}
	body := codeSpan.ReplaceAllStringFunc(prose.String(), func(span string) string {
		return "code" + strings.Repeat("\n", strings.Count(span, "\n"))
	})
	var out []link
	for _, m := range markdownTo.FindAllStringSubmatchIndex(body, -1) {
		target := body[m[2]:m[3]]
		if target != "" && !hasScheme.MatchString(target) && !strings.HasPrefix(target, "//") {
			out = append(out, link{target, strings.Count(body[:m[0]], "\n") + 1})
		}
	}
	return out
}

// headingAnchors returns the anchors GitHub gives the headings of a
// Markdown text (and those of explicit <a id=...>): the heading's text,
// lower-cased, without punctuation but hyphens and underscores, spaces
// turned into hyphens; a repeated anchor gets -1, -2 and so on.
func headingAnchors(text string) map[string]bool {
	anchors := map[string]bool{}
	seen := map[string]int{}
	inFence := false
	for _, line := range strings.Split(text, "\n") {
		if fence.MatchString(line) {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		for _, m := range htmlID.FindAllStringSubmatch(line, -1) {
			anchors[m[1]] = true
		}
		m := heading.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		// A link in a heading shows its text.
		title := linkText.ReplaceAllString(m[1], "$1")
		var slug strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case r == ' ':
				slug.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				slug.WriteRune(r)
			}
		}
		a := slug.String()
		if n := seen[a]; n > 0 {
			seen[a]++
			a += "-" + strconv.Itoa(n)
		} else {
			seen[a] = 1
		}
		anchors[a] = true
	}
	return anchors
}

package main

import (
	"fmt"
	"io"
	"strings"
)

// usage lists the commands; the variables follow it in the help.
const usage = `phonesd serves the phone resource of a bank's Accounts API.

Usage:
  phonesd                 run the service, configured by the variables below
  phonesd token [flags]   print a token of development mode's key (-h: flags)
  phonesd issuer [flags]  serve the key set of a token issuer, to run production
                          mode on one machine (-h: flags)
  phonesd issuer token [flags]
                          print a token of that issuer (-h: flags)
  phonesd check [-connect]
                          read the configuration as a start does, stopping
                          with the start's error, and reach nothing; with
                          -connect, also reach the database, the broker and
                          the key set, and say which answered
  phonesd check issuer [flags]
                          check the issuer's flags and data directory
  phonesd healthcheck     exit 0 when the phonesd of PHONES_ADDR on this machine
                          answers /healthz (a container's health check)
  phonesd version         print the version and the VCS revision built
  phonesd help            print this help (also -h, --help)

Environment (a bad value stops the start with one line naming it; an
unknown PHONES_ variable is a warning):
`

// printHelp writes the commands and every variable with its default.
func printHelp(w io.Writer) error {
	var b strings.Builder
	b.WriteString(usage)
	for _, v := range variables() {
		b.WriteString("\n  " + v.name)
		if def := v.defaultText(); def != "" {
			b.WriteString("  (default: " + plainText(def) + ")")
		}
		b.WriteString("\n")
		wrap(&b, plainText(v.meaning), "      ", 78)
	}
	_, err := fmt.Fprint(w, b.String())
	return err
}

// wrap writes text in lines of at most width columns, each after indent.
func wrap(b *strings.Builder, text, indent string, width int) {
	line := indent
	for _, word := range strings.Fields(text) {
		if len(line) > len(indent) && len(line)+1+len(word) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += word
	}
	b.WriteString(line + "\n")
}

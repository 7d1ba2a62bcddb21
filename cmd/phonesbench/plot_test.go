package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sampleReport is a report of two backends at three concurrencies.
func sampleReport() report {
	rep := report{CPUs: 2, Duration: "10s"}
	for i, backend := range []string{"sqlite", "postgres"} {
		run := runResult{Backend: backend}
		for j, c := range []int{1, 16, 64} {
			l := levelResult{Concurrency: c}
			l.Creates.PerSecond = float64(1000 * (i + j + 1))
			l.Floor.PerSecond = float64(3000 * (j + 1))
			run.Levels = append(run.Levels, l)
		}
		rep.Runs = append(rep.Runs, run)
	}
	return rep
}

// TestPlot draws a report to SVG and PNG and reads the files back: an SVG
// document with a legend entry per backend and phase, and a PNG image.
func TestPlot(t *testing.T) {
	dir := t.TempDir()
	svgPath := filepath.Join(dir, "bench.svg")
	if err := drawPlot(svgPath, sampleReport()); err != nil {
		t.Fatal(err)
	}
	svg, err := os.ReadFile(svgPath)
	if err != nil {
		t.Fatal(err)
	}
	for dec := xml.NewDecoder(bytes.NewReader(svg)); ; {
		if _, err := dec.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("the SVG is not XML: %v", err)
		}
	}
	for _, label := range []string{"sqlite creates/s", "sqlite floor/s", "postgres creates/s", "postgres floor/s", "requests in flight"} {
		if !strings.Contains(string(svg), label) {
			t.Errorf("the SVG has no %q", label)
		}
	}

	pngPath := filepath.Join(dir, "bench.png")
	if err := drawPlot(pngPath, sampleReport()); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("the PNG does not decode: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 200 {
		t.Errorf("the PNG is %dx%d; want a chart of 8 by 5 inches", b.Dx(), b.Dy())
	}
}

// TestPlotFrom draws, through the command line, the chart of a --json file
// without measuring anything.
func TestPlotFrom(t *testing.T) {
	dir := t.TempDir()
	jsonPath, svgPath := filepath.Join(dir, "bench.json"), filepath.Join(dir, "bench.svg")
	if err := writeJSON(jsonPath, sampleReport()); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	if err := run(context.Background(), []string{"phonesbench", "--plot-from", jsonPath, "--plot", svgPath}, func(string) string { return "" }, io.Discard, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	if svg, err := os.ReadFile(svgPath); err != nil || !strings.Contains(string(svg), "postgres floor/s") {
		t.Errorf("--plot-from drew no chart of the file: %v", err)
	}
	if err := run(context.Background(), []string{"phonesbench", "--plot-from", jsonPath}, func(string) string { return "" }, io.Discard, io.Discard); err == nil {
		t.Error("--plot-from without --plot: nil; want an error")
	}
}

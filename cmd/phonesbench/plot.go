package main

import (
	"encoding/json"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// drawPlot draws a chart of rep to path, in the format its extension names
// (.svg, .png or .pdf): creates/s (solid) and floor/s (dashed) against the
// concurrency, one colour per run.
func drawPlot(path string, rep report) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("phonesbench: Create phone on %d CPUs, %s per level", rep.CPUs, rep.Duration)
	p.X.Label.Text = "requests in flight (concurrency)"
	p.Y.Label.Text = "answers per second"
	p.X.Scale = plot.LogScale{}
	p.Y.Min = 0
	p.Legend.Top = true
	p.Legend.Left = true
	// One colour per run, from the Okabe-Ito palette, which readers with
	// any colour vision tell apart.
	colors := []color.RGBA{
		{0x00, 0x72, 0xb2, 0xff}, // blue
		{0xd5, 0x5e, 0x00, 0xff}, // vermilion
		{0x00, 0x9e, 0x73, 0xff}, // green
		{0xcc, 0x79, 0xa7, 0xff}, // purple
		{0xe6, 0x9f, 0x00, 0xff}, // orange
	}
	var ticks []plot.Tick
	seen := map[int]bool{}
	for i, run := range rep.Runs {
		c := colors[i%len(colors)]
		for _, phase := range []struct {
			name   string
			rate   func(levelResult) float64
			dashes []vg.Length
		}{
			{"creates/s", func(l levelResult) float64 { return l.Creates.PerSecond }, nil},
			{"floor/s", func(l levelResult) float64 { return l.Floor.PerSecond }, []vg.Length{vg.Points(5), vg.Points(3)}},
		} {
			pts := make(plotter.XYs, len(run.Levels))
			for j, l := range run.Levels {
				pts[j].X, pts[j].Y = float64(l.Concurrency), phase.rate(l)
				if !seen[l.Concurrency] {
					seen[l.Concurrency] = true
					ticks = append(ticks, plot.Tick{Value: float64(l.Concurrency), Label: strconv.Itoa(l.Concurrency)})
				}
			}
			line, points, err := plotter.NewLinePoints(pts)
			if err != nil {
				return fmt.Errorf("--plot: %s %s: %w", run.label(), phase.name, err)
			}
			line.Color, line.Width, line.Dashes = c, vg.Points(1.5), phase.dashes
			points.Color, points.Shape = c, draw.CircleGlyph{}
			p.Add(line, points)
			p.Legend.Add(run.label()+" "+phase.name, line, points)
		}
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.Y.Max *= 1.3 // room above the lines for the legend
	p.Add(plotter.NewGrid())
	if err := p.Save(8*vg.Inch, 5*vg.Inch, path); err != nil {
		return fmt.Errorf("--plot: %w", err)
	}
	return nil
}

// readJSON reads a report that --json wrote.
func readJSON(path string) (report, error) {
	var rep report
	b, err := os.ReadFile(path)
	if err != nil {
		return rep, fmt.Errorf("--plot-from: %w", err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return rep, fmt.Errorf("--plot-from: %s is not a --json report: %w", filepath.Base(path), err)
	}
	if len(rep.Runs) == 0 {
		return rep, fmt.Errorf("--plot-from: %s has no runs", filepath.Base(path))
	}
	return rep, nil
}

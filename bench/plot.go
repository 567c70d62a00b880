package main

import (
	"fmt"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// writePlots draws the three PNGs into dir.
func writePlots(dir string, r *Results) error {
	for name, draw := range map[string]func(*Results) (*plot.Plot, error){
		plotPods: podsPlot, plotStages: stagesPlot, plotLeases: leasesPlot,
	} {
		p, err := draw(r)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		roomForLegend(p)
		if err := p.Save(20*vg.Centimeter, 12*vg.Centimeter, filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// podsPlot: ADD (solid) and DEL (dashed) median vs pods already attached,
// one colour per chain.
func podsPlot(r *Results) (*plot.Plot, error) {
	p := linePlot("One pod's ADD and DEL as the node fills (median)", "pods already attached to the node")
	for i, c := range r.Chains {
		if c.NA != "" || len(c.Levels) == 0 {
			continue
		}
		for _, verb := range []string{"ADD", "DEL"} {
			xy := make(plotter.XYs, len(c.Levels))
			for k, l := range c.Levels {
				s := l.Add
				if verb == "DEL" {
					s = l.Del
				}
				xy[k].X, xy[k].Y = float64(l.Pods), s.Median
			}
			if err := addLine(p, xy, i, verb == "DEL", c.Name+" "+verb); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

// stagesPlot: grouped bars, ADD and DEL median per stage of our chains.
func stagesPlot(r *Results) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Per stage: one plugin exec (median)"
	p.Y.Label.Text = "ms"
	p.Legend.Top = true
	var stages []string
	var series []struct {
		label string
		vals  plotter.Values
	}
	for _, c := range r.Chains {
		if c.NA != "" || len(c.Stages) == 0 || c.Name[:4] != "ours" {
			continue
		}
		if stages == nil {
			for _, s := range c.Stages {
				stages = append(stages, s.Plugin)
			}
		}
		add, del := make(plotter.Values, len(stages)), make(plotter.Values, len(stages))
		for k, name := range stages {
			for _, s := range c.Stages {
				if s.Plugin == name {
					add[k], del[k] = s.Add.Median, s.Del.Median
				}
			}
		}
		series = append(series, struct {
			label string
			vals  plotter.Values
		}{c.Name + " ADD", add}, struct {
			label string
			vals  plotter.Values
		}{c.Name + " DEL", del})
	}
	if len(stages) == 0 {
		return p, nil
	}
	w := vg.Points(14)
	for i, s := range series {
		bars, err := plotter.NewBarChart(s.vals, w)
		if err != nil {
			return nil, err
		}
		bars.Color = plotutil.Color(i)
		bars.LineStyle.Width = 0
		bars.Offset = w * vg.Length(float64(i)-float64(len(series)-1)/2)
		p.Add(bars)
		p.Legend.Add(s.label, bars)
	}
	p.NominalX(stages...)
	p.X.Tick.Label.Rotation = 0.3
	p.X.Tick.Label.XAlign = draw.XRight
	return p, nil
}

// leasesPlot: ADD and DEL median vs leases held, per IPAM plugin.
func leasesPlot(r *Results) (*plot.Plot, error) {
	p := linePlot("IPAM alone: one exec vs leases held (median)", "leases already held")
	for i, name := range []string{"lockfile-ipam", "host-local"} {
		for _, verb := range []string{"ADD", "DEL"} {
			var xy plotter.XYs
			for _, res := range r.IPAM {
				if res.Plugin != name {
					continue
				}
				s := res.Add
				if verb == "DEL" {
					s = res.Del
				}
				xy = append(xy, plotter.XY{X: float64(res.Leases), Y: s.Median})
			}
			if len(xy) == 0 {
				continue
			}
			if err := addLine(p, xy, i, verb == "DEL", name+" "+verb); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

// linePlot is an empty plot of milliseconds (from 0) against x, the legend
// top left.
func linePlot(title, x string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = "ms"
	p.Legend.Top = true
	p.Legend.Left = true
	p.Y.Min = 0
	return p
}

// roomForLegend raises the y axis so the legend (top left) does not hide
// the lines.
func roomForLegend(p *plot.Plot) {
	p.Y.Max *= 1.35
}

// addLine adds a line with points in the i-th colour and shape, dashed for
// DEL, and its legend entry.
func addLine(p *plot.Plot, xy plotter.XYs, i int, dashed bool, label string) error {
	line, points, err := plotter.NewLinePoints(xy)
	if err != nil {
		return err
	}
	line.Color, points.Color, points.Shape = plotutil.Color(i), plotutil.Color(i), plotutil.Shape(i)
	if dashed {
		line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	}
	p.Add(line, points)
	p.Legend.Add(label, line, points)
	return nil
}

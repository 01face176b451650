package accuracy

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Series is one curve (or, with Points, a set of marked points).
type Series struct {
	Name   string
	XY     plotter.XYs
	Points bool
	// Color picks plotutil.Color(Color-1) so related series share a colour;
	// 0 colours by position.
	Color int
}

// Chart describes one PNG.
type Chart struct {
	Title, X, Y  string
	LogX, LogY   bool
	XMin, YMin   float64 // lower bounds for log axes (points below are clipped)
	XMax, YMax   float64 // 0: automatic
	Series       []Series
	VerticalAt   []float64 // dashed vertical reference lines
	VerticalName []string
	// Legend placement (default top right).
	LegendBottom, LegendLeft bool
}

// powerTicks labels a log axis at powers of ten ("1e-04") with unlabelled
// minor ticks between; gonum's LogTicks prints float noise such as
// "9.999999999999999e-06".
type powerTicks struct{}

func (powerTicks) Ticks(min, max float64) []plot.Tick {
	// A short axis (gallery sizes 50–1680) also labels 2x and 5x.
	short := math.Log10(max/min) <= 2
	var ticks []plot.Tick
	for k := int(math.Floor(math.Log10(min))); k <= int(math.Ceil(math.Log10(max))); k++ {
		base := math.Pow10(k)
		for m := 1; m <= 9; m++ {
			v := float64(m) * base
			if v < min || v > max {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || short && (m == 2 || m == 5) {
				t.Label = tickLabel(m, k)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}

func tickLabel(m, k int) string {
	if k >= -2 && k <= 4 {
		return strconv.FormatFloat(float64(m)*math.Pow10(k), 'f', max(0, -k), 64)
	}
	if m == 1 {
		return fmt.Sprintf("1e%d", k)
	}
	return fmt.Sprintf("%de%d", m, k)
}

// detSeries turns DET points into (FMR, FNMR) pairs.
func detSeries(name string, pts []DETPoint) Series {
	xy := make(plotter.XYs, 0, len(pts))
	for _, p := range pts {
		xy = append(xy, plotter.XY{X: p.FMR, Y: p.FNMR})
	}
	return Series{Name: name, XY: xy}
}

// Save writes the chart as a PNG of 7x5 inches into dir/name.
func (c Chart) Save(dir, name string) error {
	p := plot.New()
	p.Title.Text = c.Title
	p.X.Label.Text = c.X
	p.Y.Label.Text = c.Y
	p.Add(plotter.NewGrid())
	if c.LogX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = powerTicks{}
	}
	if c.LogY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = powerTicks{}
	}
	p.Legend.Top = !c.LegendBottom
	p.Legend.Left = c.LegendLeft
	for i, s := range c.Series {
		xy := make(plotter.XYs, 0, len(s.XY))
		for _, pt := range s.XY {
			// A log axis cannot show zero: such points are dropped.
			if (c.LogX && pt.X <= 0) || (c.LogY && pt.Y <= 0) {
				continue
			}
			if c.LogX && c.XMin > 0 && pt.X < c.XMin || c.LogY && c.YMin > 0 && pt.Y < c.YMin {
				continue
			}
			xy = append(xy, pt)
		}
		if len(xy) == 0 {
			continue
		}
		col := plotutil.Color(i)
		if s.Color > 0 {
			col = plotutil.Color(s.Color - 1)
		}
		if s.Points {
			sc, err := plotter.NewScatter(xy)
			if err != nil {
				return fmt.Errorf("plot %s: %w", name, err)
			}
			sc.Color = col
			sc.Shape = draw.CircleGlyph{}
			sc.Radius = vg.Points(3)
			p.Add(sc)
			p.Legend.Add(s.Name, sc)
			continue
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return fmt.Errorf("plot %s: %w", name, err)
		}
		l.Color = col
		l.Width = vg.Points(1.5)
		if s.Color == 0 {
			l.Dashes = plotutil.Dashes(i / len(plotutil.DefaultColors))
		}
		p.Add(l)
		p.Legend.Add(s.Name, l)
	}
	if c.XMin != 0 {
		p.X.Min = c.XMin
	}
	if c.YMin != 0 {
		p.Y.Min = c.YMin
	}
	if c.XMax != 0 {
		p.X.Max = c.XMax
	}
	if c.YMax != 0 {
		p.Y.Max = c.YMax
	}
	for i, x := range c.VerticalAt {
		v, err := plotter.NewLine(plotter.XYs{{X: x, Y: p.Y.Min}, {X: x, Y: p.Y.Max}})
		if err != nil {
			return err
		}
		v.Color = color.Gray{Y: 90}
		v.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(v)
		if i < len(c.VerticalName) {
			p.Legend.Add(c.VerticalName[i], v)
		}
	}
	if err := p.Save(7*vg.Inch, 5*vg.Inch, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("plot %s: %w", name, err)
	}
	return nil
}

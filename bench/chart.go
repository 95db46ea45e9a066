package bench

import (
	"fmt"
	"html"
	"io"
	"strings"
)

// chartColors are the bar colours by target.
var chartColors = map[string]string{
	TargetDirect:  "#9e9e9e",
	TargetPortico: "#1f77b4",
	TargetHAProxy: "#d62728",
	TargetNGINX:   "#2ca02c",
}

var chartTargets = []string{TargetPortico, TargetHAProxy, TargetNGINX, TargetDirect}

// Chart geometry, in SVG user units.
const (
	chartLabelW = 120 // the workload names
	chartPanelW = 380 // one panel
	chartGap    = 30  // between panels
	chartBarH   = 12
	chartRowGap = 14
	chartTop    = 70
)

// WriteSVG draws the report as an SVG chart: for every workload, one bar
// per target for the proxy cost (left) and for p99 latency (right). Bars
// are scaled per workload, since units differ; each bar is labelled with
// its median.
func WriteSVG(w io.Writer, r Report) error {
	sums := sortSummaries(Summarize(r.Samples), r.Workloads)
	type row struct {
		name, unit string
		by         map[string]Summary
	}
	var rows []row
	for _, s := range sums {
		if len(rows) == 0 || rows[len(rows)-1].name != s.Workload {
			rows = append(rows, row{name: s.Workload, unit: s.Unit, by: map[string]Summary{}})
		}
		rows[len(rows)-1].by[s.Target] = s
	}
	rowH := func(rw row) int {
		n := 0
		for _, t := range chartTargets {
			if _, ok := rw.by[t]; ok {
				n++
			}
		}
		return n*chartBarH + chartRowGap
	}
	height := chartTop + 20
	for _, rw := range rows {
		height += rowH(rw)
	}
	width := chartLabelW + 2*chartPanelW + chartGap + 10

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="10" y="18" font-size="14" font-weight="bold">%s</text>`+"\n", html.EscapeString("Proxy cost per unit and p99 latency (medians; shorter is better)"))
	x := 10
	for _, t := range chartTargets {
		fmt.Fprintf(&b, `<rect x="%d" y="30" width="10" height="10" fill="%s"/><text x="%d" y="39">%s</text>`+"\n", x, chartColors[t], x+14, t)
		x += 90
	}
	p1 := chartLabelW
	p2 := chartLabelW + chartPanelW + chartGap
	fmt.Fprintf(&b, `<text x="%d" y="60" font-weight="bold">proxy CPU per request, op or GiB (RSS per conn for conns-10k)</text>`+"\n", p1)
	fmt.Fprintf(&b, `<text x="%d" y="60" font-weight="bold">p99 latency</text>`+"\n", p2)

	y := chartTop
	barMax := float64(chartPanelW) * 0.72
	for _, rw := range rows {
		h := rowH(rw) - chartRowGap
		fmt.Fprintf(&b, `<text x="10" y="%d" font-weight="bold">%s</text>`+"\n", y+h/2+4, html.EscapeString(rw.name))
		var maxCost, maxP99 float64
		for _, s := range rw.by {
			if s.Target != TargetDirect {
				maxCost = max(maxCost, s.Cost.Med)
			}
			maxP99 = max(maxP99, s.P99.Med)
		}
		by := y
		for _, t := range chartTargets {
			s, ok := rw.by[t]
			if !ok {
				continue
			}
			if t != TargetDirect && maxCost > 0 {
				bar(&b, p1, by, s.Cost.Med/maxCost*barMax, chartColors[t], fmtCost(s.Unit, s.Cost.Med))
			}
			if s.P99.Med > 0 && maxP99 > 0 {
				bar(&b, p2, by, s.P99.Med/maxP99*barMax, chartColors[t], fmtMicros(s.P99.Med))
			}
			by += chartBarH
		}
		fmt.Fprintf(&b, `<line x1="10" x2="%d" y1="%d" y2="%d" stroke="#e0e0e0"/>`+"\n", width-10, y+h+chartRowGap/2, y+h+chartRowGap/2)
		y += rowH(rw)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func bar(b *strings.Builder, x, y int, w float64, color, label string) {
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/><text x="%.1f" y="%d" font-size="10">%s</text>`+"\n",
		x, y+1, max(w, 1), chartBarH-2, color, float64(x)+max(w, 1)+4, y+chartBarH-2, html.EscapeString(label))
}

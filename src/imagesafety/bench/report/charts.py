"""The reports' figures as inline SVG (no plotting library to import: a cached re-run starts in well under a second).

Two kinds: `line_chart` (lines, steps or points with error bars; linear or log x axis labelled at given values) and
`bar_chart` (grouped bars with intervals). Legends sit beside the axes, where they cannot cover a line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#3b6fb6", "#d9822b", "#3a9a5b", "#b8433c", "#7a5aa6", "#8c6d31", "#555555")
SOURCE_COLOURS = {"real": "#3b6fb6", "generated": "#d9822b", "all": "#333333"}
FONT = "font-family='system-ui,-apple-system,Segoe UI,sans-serif'"
LABEL_CHAR_PX = 6.5  # a generous width of one character of a 10 px label


@dataclass
class Series:
    """One line of a chart; `lower`/`upper` give error bars (absolute values), `step` draws a post-step curve."""

    name: str
    xs: list[float]
    ys: list[float]
    colour: str | None = None
    lower: list[float] | None = None
    upper: list[float] | None = None
    step: bool = False
    markers: bool = True
    width: float = 1.8
    dash: str | None = None
    extra: dict = field(default_factory=dict)


class _Frame:
    """Maps data to pixels inside margins; draws the axes, grid, ticks and labels."""

    def __init__(
        self,
        width: int,
        height: int,
        x_range: tuple[float, float],
        y_range: tuple[float, float],
        x_log: bool,
        left: int = 52,
        right: int = 16,
        top: int = 28,
        bottom: int = 46,
    ):
        self.width, self.height, self.x_log = width, height, x_log
        self.left, self.right, self.top, self.bottom = left, right, top, bottom
        self.x0, self.x1 = (math.log10(v) for v in x_range) if x_log else x_range
        if self.x1 == self.x0:
            self.x0, self.x1 = self.x0 - 0.5, self.x1 + 0.5
        self.y0, self.y1 = y_range

    def x(self, value: float) -> float:
        v = math.log10(value) if self.x_log else value
        return self.left + (v - self.x0) / (self.x1 - self.x0) * (self.width - self.left - self.right)

    def y(self, value: float) -> float:
        return (
            self.height - self.bottom - (value - self.y0) / (self.y1 - self.y0) * (self.height - self.top - self.bottom)
        )

    def axes(
        self, x_ticks: list[tuple[float, str]], y_ticks: list[float], x_label: str, y_label: str, title: str | None
    ) -> list[str]:
        """Grid and ticks; an x label is left out where it would touch the previous one (its grid line stays)."""
        out = []
        bottom, top = self.height - self.bottom, self.top
        for v in y_ticks:
            y = self.y(v)
            out.append(
                f"<line x1='{self.left}' x2='{self.width - self.right}' y1='{y:.1f}' y2='{y:.1f}' stroke='#e6e6e6'/>"
                f"<text x='{self.left - 6}' y='{y + 3.5:.1f}' text-anchor='end' font-size='10'>{v:g}</text>"
            )
        last_right = -math.inf
        for v, label in x_ticks:
            x = self.x(v)
            out.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{top}' y2='{bottom}' stroke='#eeeeee'/>")
            half = LABEL_CHAR_PX * len(label) / 2
            if x - half >= last_right + 6:
                out.append(
                    f"<text x='{x:.1f}' y='{bottom + 14}' text-anchor='middle' font-size='10'>{escape(label)}</text>"
                )
                last_right = x + half
        out.append(
            f"<rect x='{self.left}' y='{top}' width='{self.width - self.left - self.right}' height='{bottom - top}' "
            "fill='none' stroke='#444'/>"
        )
        out.append(
            f"<text x='{(self.left + self.width - self.right) / 2:.1f}' y='{self.height - 6}' text-anchor='middle' "
            "font-size='11'>"
            f"{escape(x_label)}</text>"
        )
        out.append(
            f"<text transform='translate(13,{(top + bottom) / 2:.1f}) rotate(-90)' text-anchor='middle' font-size='11'>"
            f"{escape(y_label)}</text>"
        )
        if title:
            out.append(f"<text x='{self.left}' y='16' font-size='12' font-weight='600'>{escape(title)}</text>")
        return out


def _legend(entries: list[tuple[str, str]], x: float, y: float, title: str | None) -> list[str]:
    out = [f"<text x='{x}' y='{y}' font-size='11' font-weight='600'>{escape(title)}</text>"] if title else []
    y += 16 if title else 0
    for i, (name, colour) in enumerate(entries):
        out.append(
            f"<rect x='{x}' y='{y + 16 * i - 9}' width='14' height='10' fill='{colour}'/>"
            f"<text x='{x + 20}' y='{y + 16 * i}' font-size='11'>{escape(name)}</text>"
        )
    return out


def _svg(width: int, height: int, body: list[str], label: str) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' viewBox='0 0 {width} {height}' "
        f"role='img' aria-label='{escape(label)}' {FONT}>{''.join(body)}</svg>"
    )


def linear_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    step = (hi - lo) / n
    return [round(lo + i * step, 10) for i in range(n + 1)]


def line_chart(
    series: list[Series],
    *,
    x_label: str,
    y_label: str,
    title: str | None = None,
    x_log: bool = False,
    x_ticks: list[float] | None = None,
    x_format: str = "{:g}",
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] = (0.0, 1.0),
    diagonal: bool = False,
    legend_title: str | None = None,
    width: int = 430,
    height: int = 300,
) -> str:
    """Lines (or post-steps) with markers and optional error bars; the legend on the right."""
    drawn = [s for s in series if s.xs]
    xs = [x for s in drawn for x in s.xs]
    x_range = x_range or ((min(xs), max(xs)) if xs else (0.0, 1.0))
    if x_log:
        x_range = (x_range[0] / 1.25, x_range[1] * 1.25)
    legend_width = 12 + 8 * max([len(s.name) for s in drawn] + [len(legend_title or "")] + [6])
    frame = _Frame(width, height, x_range, y_range, x_log, right=legend_width + 14)
    tick_values = sorted(set(x_ticks)) if x_ticks is not None else linear_ticks(*x_range)
    labels = [(v, x_format.format(v)) for v in tick_values]
    body = frame.axes(labels, linear_ticks(*y_range), x_label, y_label, title)
    if diagonal:
        body.append(
            f"<line x1='{frame.x(x_range[0]):.1f}' y1='{frame.y(y_range[0]):.1f}' x2='{frame.x(x_range[1]):.1f}' "
            f"y2='{frame.y(y_range[1]):.1f}' stroke='#999' stroke-dasharray='3,3'/>"
        )
    legend = []
    for i, s in enumerate(drawn):
        colour = s.colour or PALETTE[i % len(PALETTE)]
        legend.append((s.name, colour))
        points = list(zip(s.xs, s.ys))
        if s.step:
            path = []
            for j, (x, y) in enumerate(points):
                if j:
                    path.append(f"{frame.x(x):.1f},{frame.y(points[j - 1][1]):.1f}")
                path.append(f"{frame.x(x):.1f},{frame.y(y):.1f}")
        else:
            path = [f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in points]
        dash = f" stroke-dasharray='{s.dash}'" if s.dash else ""
        body.append(
            f"<polyline points='{' '.join(path)}' fill='none' stroke='{colour}' stroke-width='{s.width}'{dash}>"
            f"<title>{escape(s.name)}</title></polyline>"
        )
        for j, (x, y) in enumerate(points):
            if s.lower is not None and s.upper is not None:
                px, lo, hi = frame.x(x), frame.y(s.lower[j]), frame.y(s.upper[j])
                body.append(
                    f"<line x1='{px:.1f}' x2='{px:.1f}' y1='{lo:.1f}' y2='{hi:.1f}' stroke='{colour}'/>"
                    f"<line x1='{px - 4:.1f}' x2='{px + 4:.1f}' y1='{lo:.1f}' y2='{lo:.1f}' stroke='{colour}'/>"
                    f"<line x1='{px - 4:.1f}' x2='{px + 4:.1f}' y1='{hi:.1f}' y2='{hi:.1f}' stroke='{colour}'/>"
                )
            if s.markers:
                body.append(
                    f"<circle cx='{frame.x(x):.1f}' cy='{frame.y(y):.1f}' r='3.5' fill='{colour}'>"
                    f"<title>{escape(s.name)}: {x:g}, {y:.3f}</title></circle>"
                )
    body += _legend(legend, width - legend_width, frame.top + 10, legend_title)
    return _svg(width, height, body, title or y_label)


def bar_chart(
    categories: list[str],
    groups: list[tuple[str, list[float | None], list[float | None], list[float | None]]],
    *,
    y_label: str,
    legend_title: str | None = None,
    y_range: tuple[float, float] = (0.0, 1.0),
    height: int = 320,
) -> str:
    """Grouped bars: `groups` = [(name, values, lower ends, upper ends)], one value per category (None: no bar)."""
    per = max(1, len(groups))
    slot = max(46, 18 * per + 14, 300 // max(1, len(categories)))  # a plot area of at least 300 px
    legend_width = 12 + 8 * max([len(g[0]) for g in groups] + [len(legend_title or "")] + [6])
    width = 60 + slot * len(categories) + legend_width + 20
    frame = _Frame(width, height, (0, len(categories)), y_range, False, right=legend_width + 20, bottom=80)
    body = frame.axes([], linear_ticks(*y_range), "", y_label, None)
    bar = (slot - 14) / per
    legend = []
    for g, (name, values, lows, highs) in enumerate(groups):
        colour = SOURCE_COLOURS.get(name) or PALETTE[g % len(PALETTE)]
        legend.append((name, colour))
        for i, v in enumerate(values):
            if v is None:
                continue
            x = frame.x(i) + 7 + g * bar
            body.append(
                f"<rect x='{x:.1f}' y='{frame.y(v):.1f}' width='{bar - 2:.1f}' "
                f"height='{frame.y(y_range[0]) - frame.y(v):.1f}' "
                f"fill='{colour}'><title>{escape(categories[i])} · {escape(name)}: {v:.3f}</title></rect>"
            )
            if lows[i] is not None and highs[i] is not None:
                cx = x + (bar - 2) / 2
                body.append(
                    f"<line x1='{cx:.1f}' x2='{cx:.1f}' y1='{frame.y(lows[i]):.1f}' y2='{frame.y(highs[i]):.1f}' "
                    "stroke='#222'/>"
                )
    for i, c in enumerate(categories):
        cx = frame.x(i + 0.5)
        body.append(
            f"<text transform='translate({cx + 4:.1f},{height - 72}) rotate(-35)' text-anchor='end' "
            f"font-size='10'>{escape(c)}</text>"
        )
    body += _legend(legend, width - legend_width - 10, frame.top + 10, legend_title)
    return _svg(width, height, body, y_label)

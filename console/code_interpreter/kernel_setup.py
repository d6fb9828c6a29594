"""Python run once in every new kernel, silently: it teaches IPython to describe a
matplotlib figure as chart data (bars, lines, scatter points, pie slices), which the
client reads as a result's `chart` next to the figure's PNG.

It runs inside the sandbox with the user's own rights, so it is only a convenience: a
failure leaves the kernel as it was (figures still come as images).
"""

from __future__ import annotations

CHART_MIME = "application/vnd.nullspace.chart+json"
MAX_ELEMENTS = 1000

SOURCE = f'''
def _nullspace_setup():
    import math
    from IPython import get_ipython
    from IPython.core.formatters import BaseFormatter
    from traitlets import ObjectName, Unicode

    shell = get_ipython()
    if shell is None:
        return

    class ChartFormatter(BaseFormatter):
        # Matched by class name rather than registered for the type: the inline backend
        # takes every formatter's Figure printer away when pyplot first loads.
        format_type = Unicode("{CHART_MIME}")
        print_method = ObjectName("_repr_nullspace_chart_")
        _return_type = (dict,)

        def __call__(self, obj):
            kind = type(obj)
            if self.enabled and (kind.__module__, kind.__name__) == ("matplotlib.figure", "Figure"):
                return safe_chart(obj)
            return None

    def number(value):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None
        if math.isnan(value) or math.isinf(value):
            return None
        return int(value) if value.is_integer() else value

    def tick_label(axis, value):
        try:
            return str(axis.get_major_formatter()(value))
        except Exception:
            return str(number(value))

    def group_of(artist):
        label = artist.get_label() or ""
        return None if label.startswith("_") else label

    def chart(figure):
        from matplotlib.collections import PathCollection
        from matplotlib.container import BarContainer
        from matplotlib.patches import Wedge

        axes = figure.get_axes()
        if len(axes) != 1:
            return None
        ax = axes[0]
        found = {{"title": ax.get_title(), "x_label": ax.get_xlabel(), "y_label": ax.get_ylabel()}}
        bars = [c for c in ax.containers if isinstance(c, BarContainer)]
        wedges = [p for p in ax.patches if isinstance(p, Wedge)]
        points = [c for c in ax.collections if isinstance(c, PathCollection)]
        elements = []
        if bars:
            found["type"] = "bar"
            for container in bars:
                group = group_of(container) or "default"
                for rect in container.patches:
                    x = rect.get_x() + rect.get_width() / 2
                    elements.append(
                        {{"label": tick_label(ax.xaxis, x), "value": number(rect.get_height()), "group": group}}
                    )
        elif ax.get_lines():
            found["type"] = "line"
            for line in ax.get_lines():
                group = group_of(line)
                for x, y in zip(line.get_xdata(), line.get_ydata()):
                    elements.append({{"x": number(x), "y": number(y), "group": group}})
        elif points:
            found["type"] = "scatter"
            for collection in points:
                group = group_of(collection)
                for x, y in collection.get_offsets():
                    elements.append({{"x": number(x), "y": number(y), "group": group}})
        elif wedges:
            found["type"] = "pie"
            texts = [t.get_text() for t in ax.texts]
            for index, wedge in enumerate(wedges):
                label = texts[index] if index < len(texts) else str(index)
                value = number((wedge.theta2 - wedge.theta1) / 360)
                elements.append({{"label": label, "value": value, "group": "default"}})
        else:
            return None
        found["elements"] = elements[:{MAX_ELEMENTS}]
        return found

    def safe_chart(figure):
        try:
            return chart(figure)
        except Exception:  # no chart data is better than a warning under the figure
            return None

    shell.display_formatter.formatters["{CHART_MIME}"] = ChartFormatter(
        parent=shell.display_formatter
    )


try:
    _nullspace_setup()
except Exception:
    pass
del _nullspace_setup
'''

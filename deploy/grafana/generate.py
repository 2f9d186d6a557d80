#!/usr/bin/env python3
"""Write fcsp's Grafana dashboards (deploy/grafana/dashboards/*.json) from panels.py, with
grafana-foundation-sdk.

    python deploy/grafana/generate.py           # (re)write the JSON
    python deploy/grafana/generate.py --check   # exit 1 if the committed JSON differs from what this writes
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import common as gc
from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as gcm
from grafana_foundation_sdk.models import dashboard as gm
from grafana_foundation_sdk.models import prometheus as gp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import panels  # noqa: E402  (beside this file; deploy/ is no package)

OUT_DIR = HERE / "dashboards"
DATASOURCE = gm.DataSourceRef(type_val="prometheus", uid="${datasource}")
PanelBuilder = timeseries.Panel | stat.Panel | table.Panel


def _panel(spec: panels.Panel) -> PanelBuilder:
    builder: PanelBuilder
    if spec.kind == "timeseries":
        legend = gc.VizLegendOptions().show_legend(True).display_mode(gcm.LegendDisplayMode.LIST)
        builder = (
            timeseries.Panel()
            .fill_opacity(10)
            .legend(legend.placement(gcm.LegendPlacement.BOTTOM))
            .tooltip(gc.VizTooltipOptions().mode(gcm.TooltipDisplayMode.MULTI).sort(gcm.SortOrder.DESCENDING))
        )
    elif spec.kind == "stat":
        builder = stat.Panel().reduce_options(gc.ReduceDataOptions().calcs(["lastNotNull"]))
        builder = builder.graph_mode(gcm.BigValueGraphMode.AREA)
    else:
        builder = table.Panel().show_header(True)
    builder = builder.title(spec.title).unit(spec.unit).datasource(DATASOURCE).span(spec.width)
    builder = builder.height(spec.height)
    if spec.description:
        builder = builder.description(spec.description)
    for i, q in enumerate(spec.queries):
        target = prometheus.Dataquery().expr(q.expr).ref_id(chr(ord("A") + i)).datasource(DATASOURCE)
        if spec.kind == "table":
            target = target.instant().format(gp.PromQueryFormat.TABLE)
        builder = builder.with_target(target.legend_format(q.legend) if q.legend else target)
    return builder


def _variable(spec: panels.Variable) -> gd.QueryVariable:
    return (
        gd.QueryVariable(spec.name)
        .label(spec.label)
        .datasource(DATASOURCE)
        .query(spec.query)
        .refresh(gm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(gm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(gm.VariableOption(selected=True, text="All", value="$__all"))
    )


def build(spec: panels.Dashboard) -> dict[str, object]:
    """The dashboard as JSON-ready data."""
    board = (
        gd.Dashboard(spec.title)
        .uid(spec.uid)
        .description(spec.description)
        .tags(list(spec.tags))
        .refresh("30s")
        .time("now-3h", "now")
        .timezone("browser")
        .tooltip(gm.DashboardCursorSync.CROSSHAIR)
        .with_variable(gd.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
    )
    for var in spec.variables:
        board = board.with_variable(_variable(var))
    for row_title, row_panels in spec.rows:
        board = board.with_row(gd.Row(row_title))
        for p in row_panels:
            board = board.with_panel(_panel(p))
    data: dict[str, object] = json.loads(JSONEncoder().encode(board.build()))
    return data


def render(spec: panels.Dashboard) -> str:
    return json.dumps(build(spec), indent=2, sort_keys=True) + "\n"


def optional_exprs() -> set[str]:
    """Expressions allowed to return nothing (they need dcgm-exporter), as they appear in the JSON."""
    return {
        q.expr for d in panels.DASHBOARDS for _, row in d.rows for p in row for q in p.queries if q.optional
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the committed JSON, write nothing")
    args = parser.parse_args(argv)
    stale = []
    for spec in panels.DASHBOARDS:
        path = OUT_DIR / f"{spec.uid}.json"
        text = render(spec)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            OUT_DIR.mkdir(exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"out of date (run python {Path(__file__).name}): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

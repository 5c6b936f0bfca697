"""All figures of sampletopo (matplotlib + seaborn live only in this subpackage).

Every ``plot_*`` function takes ``ax=None`` and returns the Axes; none calls ``plt.show()``.
"""

from sampletopo.plotting._topology import (
    default_heatmap_epochs,
    heatmap_bins,
    heatmap_figure,
    plot_barcode,
    plot_diagram,
    plot_heatmap,
    plot_total_persistence,
    plot_wasserstein,
    total_persistence_figure,
    wasserstein_figure,
)

__all__ = [
    "default_heatmap_epochs",
    "heatmap_bins",
    "heatmap_figure",
    "plot_barcode",
    "plot_diagram",
    "plot_heatmap",
    "plot_total_persistence",
    "plot_wasserstein",
    "total_persistence_figure",
    "wasserstein_figure",
]

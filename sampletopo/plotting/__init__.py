"""All figures of sampletopo (matplotlib + seaborn live only in this subpackage).

Every ``plot_*`` function takes ``ax=None`` and returns the Axes; none calls ``plt.show()``.
"""

from sampletopo.plotting._landscape import (
    plot_hessian_spectrum,
    plot_landscape_1d,
    plot_landscape_contour,
    plot_landscape_profile,
    plot_landscape_surface,
    plot_random_directions,
    save_landscape_figures,
)
from sampletopo.plotting._samples import plot_member_losses, plot_region_images, sample_figures
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
    "plot_hessian_spectrum",
    "plot_landscape_1d",
    "plot_landscape_contour",
    "plot_landscape_profile",
    "plot_landscape_surface",
    "plot_member_losses",
    "plot_random_directions",
    "plot_region_images",
    "sample_figures",
    "save_landscape_figures",
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

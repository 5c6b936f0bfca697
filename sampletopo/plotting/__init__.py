"""All figures of sampletopo (matplotlib + seaborn live only in this subpackage).

Every ``plot_*`` function takes ``ax=None`` and returns the Axes; none calls ``plt.show()``.
"""

from sampletopo.plotting._landscape import __all__ as _landscape_names
from sampletopo.plotting._landscape import (
    plot_hessian_spectrum as plot_hessian_spectrum,
)
from sampletopo.plotting._landscape import (
    plot_landscape_1d as plot_landscape_1d,
)
from sampletopo.plotting._landscape import (
    plot_landscape_contour as plot_landscape_contour,
)
from sampletopo.plotting._landscape import (
    plot_landscape_profile as plot_landscape_profile,
)
from sampletopo.plotting._landscape import (
    plot_landscape_surface as plot_landscape_surface,
)
from sampletopo.plotting._landscape import (
    plot_random_directions as plot_random_directions,
)
from sampletopo.plotting._landscape import (
    save_landscape_figures as save_landscape_figures,
)
from sampletopo.plotting._samples import plot_member_losses, plot_region_images, sample_figures
from sampletopo.plotting._topology import (
    default_heatmap_epochs,
    heatmap_bins,
    heatmap_figure,
    plot_barcode,
    plot_diagram,
    plot_heatmap,
    plot_sensitivity,
    plot_total_persistence,
    plot_wasserstein,
    sensitivity_caption,
    total_persistence_figure,
    wasserstein_figure,
)

__all__ = [
    *_landscape_names,
    "plot_member_losses",
    "plot_region_images",
    "sample_figures",
    "default_heatmap_epochs",
    "heatmap_bins",
    "heatmap_figure",
    "plot_barcode",
    "plot_diagram",
    "plot_heatmap",
    "plot_sensitivity",
    "plot_total_persistence",
    "plot_wasserstein",
    "sensitivity_caption",
    "total_persistence_figure",
    "wasserstein_figure",
]

"""The numeric kernels the methods are built on (docs/protocol.md §5): nearest-neighbour search
(``knn``, its exact CPU filter ``knn_cpu``), the greedy coreset (``coreset``, its CPU kernel
``kcenter_cpu``) and the floating-point products and error bounds they share (``products``).

They know nothing of features, images or methods: arrays in, indices and distances out."""

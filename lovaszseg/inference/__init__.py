"""Running a trained network on images: tiling and padding to the network's stride, and the
overlays and label maps that show what it predicted."""

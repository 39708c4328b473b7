"""Zoo generation: INR fits, small-CNN sweeps, heterogeneous CNNs and model trees, each trained
by this library on real images and saved chunk by chunk so interrupted work resumes."""

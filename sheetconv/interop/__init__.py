"""PyTorch interop: modules to and from networks (torch.fx for graphs), state-dict files
read with bounds, and the cross-check against ``torch.nn.functional``. torch is imported
lazily, only when one of these is called."""

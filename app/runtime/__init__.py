"""Model runtime: card, loader, registry, batcher, device, preprocessing."""

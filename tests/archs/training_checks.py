"""Checks shared by the enhancer arch tests."""
import torch
import torch.nn.functional as F


def l1_losses_of_adam_steps(net, size, steps=10, lr=3e-3):
    """L1 losses of ``steps`` Adam steps that teach ``net`` to brighten a darkened random image."""
    target = torch.rand(1, 3, size, size)
    dark = target * 0.3
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = F.l1_loss(net(dark), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses

"""The same network and IFM computation written in PyTorch, for benchmarks/bench.py only.

Mirrors experiment/classifier.py (Table 1) and ifm/ (D of Table 2, JSD
estimator, K joint pairs per image, marginal pairs within the image, nearest
upsampling read directly at (y // 2, x // 2)). torch is imported lazily and is
never needed to train or test the project.
"""


def build(device, ifm, samples, lam=1.0, seed=0):
    import torch
    import torch.nn as tnn
    import torch.nn.functional as Fn

    torch.manual_seed(seed)
    channels = (32, 64, 128, 128)

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            blocks, c_in = [], 3
            for c in channels:
                blocks.append(tnn.Sequential(tnn.Conv2d(c_in, c, 3, padding=1), tnn.BatchNorm2d(c),
                                             tnn.LeakyReLU(0.2)))
                c_in = c
            self.blocks = tnn.ModuleList(blocks)
            self.fc = tnn.Linear(512, 10)

        def forward(self, x):
            features = []
            for block in self.blocks:
                h = block(x)
                features.append(h)
                x = Fn.max_pool2d(h, 2)
            return self.fc(x.flatten(1)), features

    def critic(n_in):
        return tnn.Sequential(tnn.Linear(n_in, 256), tnn.BatchNorm1d(256), tnn.LeakyReLU(0.2),
                              tnn.Linear(256, 128), tnn.BatchNorm1d(128), tnn.LeakyReLU(0.2),
                              tnn.Linear(128, 64), tnn.BatchNorm1d(64), tnn.LeakyReLU(0.2),
                              tnn.Linear(64, 1))

    net = Net().to(device)
    critics = tnn.ModuleList([critic(channels[i] + channels[i + 1]) for i in range(3)]).to(device)
    params = list(net.parameters()) + (list(critics.parameters()) if ifm else [])
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)

    def pair_F(D, low, high):
        N, C, h, w = low.shape
        K = h * w if samples == "all" else samples
        dev = low.device
        n = torch.arange(N, device=dev).repeat_interleave(K)
        if samples == "all":
            pos = torch.arange(h * w, device=dev).repeat(N)
        else:
            pos = torch.randint(0, h * w, (N * K,), device=dev)
        pos_q_low = torch.randint(0, h * w, (N * K,), device=dev)
        pos_q_high = torch.randint(0, h * w, (N * K,), device=dev)

        def take_low(p):
            return low[n, :, p // w, p % w]

        def take_high(p):
            return high[n, :, (p // w) // 2, (p % w) // 2]

        joint = torch.cat([take_low(pos), take_high(pos)], 1)
        marg = torch.cat([take_low(pos_q_low), take_high(pos_q_high)], 1)
        V = D(torch.cat([joint, marg], 0)).squeeze(1)
        Vj, Vm = V[:N * K], V[N * K:]
        return (-Fn.softplus(-Vj)).mean() - Fn.softplus(Vm).mean()

    def train_step(x, y):
        opt.zero_grad(set_to_none=True)
        logits, features = net(x)
        loss = Fn.cross_entropy(logits, y)
        if ifm:
            F_sum = sum(pair_F(critics[i], features[i], features[i + 1]) for i in range(3))
            loss = loss - lam * F_sum
        loss.backward()
        opt.step()
        return loss

    def inference(x):
        net.eval()
        with torch.no_grad():
            out = net(x)[0]
        net.train()
        return out

    return train_step, inference

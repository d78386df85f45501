"""The authors' MUSK protocol (the semantics of their train_mil.py, re-implemented) in PyTorch, with switches,
to tell which of its details explain the paper's MUSK figures (see bench/README.md). Not used by the build
or the tests. Needs python3 with torch, h5py and scikit-learn, e.g. the CUDA-build venv:
    .venv-torch/bin/pip install h5py scikit-learn
    .venv-torch/bin/python bench/train_mil_protocol.py --set musk2 --seeds 3 --arch paper
Switches: --norm global|fold|minmax|unit|raw100 (global = the authors' musk*norm files), --posw 1|0
(pos_weight #neg/#pos), --init default|orth, --arch current|paper|relu (paper: linear q, v = Linear; relu:
linear q, v = Linear-ReLU). Folds are contiguous chunks of a seeded shuffle, as in train_mil.py; prints the
best-over-epochs and the last-epoch accuracy per seed.
"""
import os, csv, argparse, numpy as np, torch, torch.nn as nn, torch.nn.functional as F, h5py
from sklearn.metrics import roc_curve, roc_auc_score
p = argparse.ArgumentParser()
p.add_argument('--set', default='musk2', choices=['musk1', 'musk2'])
p.add_argument('--seeds', type=int, default=1)
p.add_argument('--epochs', type=int, default=40)
p.add_argument('--norm', default='global', choices=['global', 'fold', 'minmax', 'unit', 'raw100'])
p.add_argument('--posw', type=int, default=1)
p.add_argument('--init', default='default', choices=['default', 'orth'])
p.add_argument('--arch', default='current', choices=['current', 'paper', 'relu'])
p.add_argument('--lr', type=float, default=2e-4)
p.add_argument('--wd', type=float, default=5e-3)
a = p.parse_args()
torch.set_num_threads(1)
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'data', 'mil-benchmarks', a.set)
bags = []
for r in csv.DictReader(open(f'{root}/labels.csv')):
    with h5py.File(f"{root}/bags/{r['slide_id']}.h5") as f:
        bags.append((int(r['label']), np.asarray(f['features'], dtype=np.float32)))
allx = np.concatenate([b[1] for b in bags])
def normed(train, test):
    if a.norm == 'global':
        mu, sd = allx.mean(0), allx.std(0)
    elif a.norm == 'fold':
        x = np.concatenate([b[1] for b in train]); mu, sd = x.mean(0), x.std(0)
    elif a.norm == 'minmax':  # each feature to [-1, 1] over all instances
        lo, hi = allx.min(0), allx.max(0); mu, sd = (lo + hi) / 2, (hi - lo) / 2
    elif a.norm == 'unit':  # each instance to unit length
        f = lambda bl: [(l, x / np.linalg.norm(x, axis=1, keepdims=True)) for l, x in bl]
        return f(train), f(test)
    elif a.norm == 'raw100':
        mu, sd = 0, 100.0
    sd = np.where(sd > 0, sd, 1)
    f = lambda bl: [(l, (x - mu) / sd) for l, x in bl]
    return f(train), f(test)
class Net(nn.Module):
    def __init__(s, d):
        super().__init__()
        s.ic = nn.Linear(d, 1)
        s.q = nn.Sequential(nn.Linear(d, 128), nn.ReLU(), nn.Linear(128, 128), nn.Tanh()) if a.arch == 'current' else nn.Linear(d, 128)
        s.v = nn.Identity() if a.arch == 'current' else nn.Linear(d, d) if a.arch == 'paper' else nn.Sequential(nn.Linear(d, d), nn.ReLU())
        s.fcc = nn.Conv1d(1, 1, kernel_size=d)
        if a.init == 'orth':
            for m in s.modules():
                if isinstance(m, (nn.Linear, nn.Conv1d)):
                    nn.init.orthogonal_(m.weight.view(m.weight.shape[0], -1)); nn.init.zeros_(m.bias)
    def forward(s, x):
        c = s.ic(x)                       # N x 1
        Q = s.q(x)
        _, mi = torch.sort(c, 0, descending=True)
        qmax = s.q(x[mi[0]])              # 1 x 128
        A = F.softmax(Q @ qmax.t() / np.sqrt(Q.shape[1]), 0)
        B = A.t() @ s.v(x)                    # 1 x d
        return c, s.fcc(B.unsqueeze(0)).view(1, -1)
def score(labels, preds):
    fpr, tpr, th = roc_curve(labels, preds); i = np.argmin(fpr - tpr); t = th[i]
    return np.mean((np.array(preds) >= t).astype(int) == np.array(labels)), roc_auc_score(labels, preds)
res_best, res_last = [], []
for seed in range(1, a.seeds + 1):
    rng = np.random.RandomState(seed); torch.manual_seed(seed)
    order = rng.permutation(len(bags)); sh = [bags[i] for i in order]
    n = len(sh) // 10
    chunks = [sh[i:i + n] for i in range(0, len(sh), n)]
    accs_best, accs_last = [], []
    for k in range(10):
        test = chunks[k]; train = [b for j, c in enumerate(chunks) if j != k for b in c]
        train, test = normed(train, test)
        net = Net(166)
        npos = sum(l for l, _ in train); pw = torch.tensor((len(train) - npos) / npos if a.posw else 1.0)
        crit = nn.BCEWithLogitsLoss(pos_weight=pw)
        opt = torch.optim.Adam(net.parameters(), lr=a.lr, betas=(0.5, 0.9), weight_decay=a.wd)
        sch = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.epochs, 0)
        tx = [(torch.tensor(float(l)).view(1, 1), torch.from_numpy(x)) for l, x in train]
        best = 0
        for ep in range(a.epochs):
            tl = 0
            for y, x in tx:
                opt.zero_grad(); c, b = net(x); m, _ = c.max(0)
                loss = 0.5 * crit(b, y) + 0.5 * crit(m.view(1, 1), y); loss.backward(); opt.step(); tl += loss.item()
            sch.step()
            with torch.no_grad():
                preds = [torch.sigmoid(net(torch.from_numpy(x))[1]).item() for _, x in test]
            acc, auc = score([l for l, _ in test], preds); best = max(best, acc)
        accs_best.append(best); accs_last.append(acc)
    res_best.append(np.mean(accs_best)); res_last.append(np.mean(accs_last))
    print(f'seed {seed}: best-over-epochs {res_best[-1]:.3f} last-epoch {res_last[-1]:.3f} train loss {tl/len(tx):.3f}', flush=True)
print(f'{vars(a)} mean best {np.mean(res_best):.3f} last {np.mean(res_last):.3f}')

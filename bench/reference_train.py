#!/usr/bin/env python3
"""The authors' DSMIL training loop (binli123/dsmil-wsi, train_tcga.py at 80465ed, 5-fold-cv scheme's
epoch loop), re-written here from reading it, for bench/vs_reference.sh's side-by-side timing.

What it keeps, step for step:
- data: every slide converted once to a tensor file holding [N, K + C] (features with their rows shuffled,
  then the label vector repeated on every row), as generate_pt_files does from the per-slide CSVs; each
  epoch then loads every bag's file again (torch.load), as train() and test() do. `--load h5` instead
  reads the .h5 file itself every epoch (CLAM's `load_from_h5` style), with no conversion step.
- model: MILNet(FCLayer, BClassifier): instance classifier Linear(K, C); q = Linear(K, 128), ReLU,
  Linear(128, 128), Tanh; v = identity; critical instance per class from a descending sort of the
  instance logits; attention softmax over instances of Q q_max^T / sqrt(128); fcc = Conv1d(C, C, K).
  Orthogonal init of every Linear / Conv1d weight, zero biases.
- optimisation: one bag per step, bags reshuffled every epoch, dropout_patches (a permutation at p = 0,
  in training and testing), loss 0.5 BCE(bag) + 0.5 BCE(max instance), Adam(lr, betas (0.5, 0.9),
  weight_decay), CosineAnnealingLR(T_max = epochs, eta_min), stepped after each epoch's test.
- each epoch's test: loss, sklearn ROC AUC per class (1 when a class is absent), Youden thresholds,
  exact-match accuracy, selection score (sum(AUC) + accuracy) / 2; the weights and thresholds saved on
  improvement; early stop when the counter passes stop_epochs.
Runs on the CPU by default (the authors' script hard-codes CUDA); `--device cuda` runs it as they do: the
model on the GPU, each bag copied there after loading (a blocking pageable copy), a loss.item() per bag.
Prints `epoch=E seconds=S` after each epoch (train + test, for bench/gpu_bench.sh) and `final_val_auc=`
(the last epoch's mean AUC).
"""
import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.utils import shuffle


class FCLayer(nn.Module):
    def __init__(self, in_size, out_size=1):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(in_size, out_size))

    def forward(self, feats):
        return feats, self.fc(feats)


class BClassifier(nn.Module):
    def __init__(self, input_size, output_class):
        super().__init__()
        self.q = nn.Sequential(nn.Linear(input_size, 128), nn.ReLU(), nn.Linear(128, 128), nn.Tanh())
        self.v = nn.Identity()
        self.fcc = nn.Conv1d(output_class, output_class, kernel_size=input_size)

    def forward(self, feats, c):
        V = self.v(feats)
        Q = self.q(feats).view(feats.shape[0], -1)
        _, m_indices = torch.sort(c, 0, descending=True)
        m_feats = torch.index_select(feats, dim=0, index=m_indices[0, :])
        q_max = self.q(m_feats)
        A = torch.mm(Q, q_max.transpose(0, 1))
        A = F.softmax(A / torch.sqrt(torch.tensor(Q.shape[1], dtype=torch.float32)), 0)
        B = torch.mm(A.transpose(0, 1), V)
        B = B.view(1, B.shape[0], B.shape[1])
        C = self.fcc(B).view(1, -1)
        return C, A, B


class MILNet(nn.Module):
    def __init__(self, i_classifier, b_classifier):
        super().__init__()
        self.i_classifier = i_classifier
        self.b_classifier = b_classifier

    def forward(self, x):
        feats, classes = self.i_classifier(x)
        prediction_bag, A, B = self.b_classifier(feats, classes)
        return classes, prediction_bag, A, B


def read_labels(channel):
    with open(os.path.join(channel, "labels.csv")) as f:
        return [(os.path.join(channel, r["slide_id"] + ".h5"), float(r["label"])) for r in csv.DictReader(f)]


def h5_bag(path, label, num_classes):
    """[N, K + C]: the slide's features followed by its label vector on every row."""
    with h5py.File(path, "r") as f:
        feats = np.asarray(f["features"][:], dtype=np.float32)
    target = np.zeros(num_classes, dtype=np.float32)
    target[0] = label  # binary: the label itself (the authors' num_classes == 1 branch)
    return torch.cat((torch.from_numpy(feats), torch.from_numpy(target).repeat(feats.shape[0], 1)), dim=1)


def generate_pt_files(bags, num_classes, out_dir):
    paths = []
    for path, label in bags:
        stacked = h5_bag(path, label, num_classes)
        stacked = stacked[torch.from_numpy(shuffle(np.arange(stacked.shape[0])))]  # their row shuffle
        pt = os.path.join(out_dir, os.path.splitext(os.path.basename(path))[0] + ".pt")
        torch.save(stacked, pt)
        paths.append(pt)
    return paths


def load_bag(item, args):
    if args.load == "pt":
        return torch.load(item, map_location="cpu")
    return h5_bag(item[0], item[1], args.num_classes)


def dropout_patches(feats, p):
    num_rows = feats.size(0)
    return feats[torch.randperm(num_rows, device=feats.device)[: int(num_rows * p)]]


def bag_forward(stacked, milnet, criterion, args):
    stacked = stacked.to(args.device)  # the authors' Variable(...).cuda() of the label and the features
    bag_label = stacked[0, args.feats_size:].unsqueeze(0)
    bag_feats = dropout_patches(stacked[:, : args.feats_size], 1 - args.dropout_patch).view(-1, args.feats_size)
    ins_prediction, bag_prediction, _, _ = milnet(bag_feats)
    max_prediction, _ = torch.max(ins_prediction, 0)
    bag_loss = criterion(bag_prediction.view(1, -1), bag_label.view(1, -1))
    max_loss = criterion(max_prediction.view(1, -1), bag_label.view(1, -1))
    return 0.5 * bag_loss + 0.5 * max_loss, bag_label, bag_prediction


def train(args, train_items, milnet, criterion, optimizer):
    milnet.train()
    total_loss = 0
    for i, item in enumerate(shuffle(train_items)):
        optimizer.zero_grad()
        loss, _, _ = bag_forward(load_bag(item, args), milnet, criterion, args)
        loss.backward()
        optimizer.step()
        total_loss = total_loss + loss.item()
        sys.stdout.write("\r Training bag [%d/%d] bag loss: %.4f" % (i, len(train_items), loss.item()))
    return total_loss / len(train_items)


def optimal_thresh(fpr, tpr, thresholds):
    idx = np.argmin(fpr - tpr, axis=0)
    return thresholds[idx]


def test(args, test_items, milnet, criterion):
    milnet.eval()
    total_loss, labels, predictions = 0, [], []
    with torch.no_grad():
        for item in test_items:
            loss, bag_label, bag_prediction = bag_forward(load_bag(item, args), milnet, criterion, args)
            total_loss = total_loss + loss.item()
            labels.append(bag_label.squeeze(0).cpu().numpy().astype(int))
            predictions.append(torch.sigmoid(bag_prediction).squeeze(0).cpu().numpy())
    labels, predictions = np.array(labels), np.array(predictions)
    aucs, thresholds = [], []
    for c in range(args.num_classes):
        fpr, tpr, thr = roc_curve(labels[:, c], predictions[:, c], pos_label=1)
        thresholds.append(optimal_thresh(fpr, tpr, thr))
        aucs.append(roc_auc_score(labels[:, c], predictions[:, c]) if len(set(labels[:, c])) > 1 else 1)
    predicted = (predictions >= np.array(thresholds)[None, :]).astype(int)
    avg_score = float(np.mean([np.array_equal(a, b) for a, b in zip(labels, predicted)]))
    return total_loss / len(test_items), avg_score, aucs, thresholds


def init_model(args):
    milnet = MILNet(FCLayer(args.feats_size, args.num_classes), BClassifier(args.feats_size, args.num_classes))

    def apply_sparse_init(m):
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv1d)):
            nn.init.orthogonal_(m.weight)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)

    milnet.apply(apply_sparse_init)
    milnet = milnet.to(args.device)
    criterion = nn.BCEWithLogitsLoss()
    optimizer = torch.optim.Adam(milnet.parameters(), lr=args.lr, betas=(0.5, 0.9), weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.epochs, args.min_lr)
    return milnet, criterion, optimizer, scheduler


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", required=True, help="channel: <slide>.h5 files and labels.csv (slide_id,label)")
    p.add_argument("--validation", required=True)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--stop-epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--weight-decay", type=float, default=1e-3)
    p.add_argument("--min-lr", type=float, default=5e-6)
    p.add_argument("--dropout-patch", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    p.add_argument("--load", choices=["pt", "h5"], default="pt",
                   help="pt: convert once, torch.load per bag per epoch (the authors'); h5: read the .h5 each epoch")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (the authors' code runs on cuda)")
    p.add_argument("--work-dir", default="", help="where the tensor files and weights go (default: a temp dir)")
    args = p.parse_args()
    args.num_classes = 1
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    work = args.work_dir or tempfile.mkdtemp(prefix="dsmil_reference_")
    os.makedirs(work, exist_ok=True)
    train_bags, val_bags = read_labels(args.train), read_labels(args.validation)
    with h5py.File(train_bags[0][0], "r") as f:
        args.feats_size = f["features"].shape[1]
    if args.load == "pt":
        for d in ("temp_train", "temp_val"):
            shutil.rmtree(os.path.join(work, d), ignore_errors=True)
            os.makedirs(os.path.join(work, d))
        train_items = generate_pt_files(train_bags, args.num_classes, os.path.join(work, "temp_train"))
        val_items = generate_pt_files(val_bags, args.num_classes, os.path.join(work, "temp_val"))
    else:
        train_items, val_items = train_bags, val_bags

    milnet, criterion, optimizer, scheduler = init_model(args)
    best_score, counter, aucs = 0, 0, [float("nan")]
    for epoch in range(1, args.epochs + 1):
        epoch_start = time.perf_counter()
        counter += 1
        train_loss = train(args, train_items, milnet, criterion, optimizer)
        test_loss, avg_score, aucs, thresholds = test(args, val_items, milnet, criterion)
        print("\r Epoch [%d/%d] train loss: %.4f test loss: %.4f, average score: %.4f, AUC: %s"
              % (epoch, args.epochs, train_loss, test_loss, avg_score, "|".join("%.4f" % a for a in aucs)))
        print("epoch=%d seconds=%.3f" % (epoch, time.perf_counter() - epoch_start), flush=True)
        scheduler.step()
        score = (sum(aucs) + avg_score) / 2
        if score > best_score:
            counter, best_score = 0, score
            torch.save(milnet.state_dict(), os.path.join(work, "fold_0_1.pth"))
            with open(os.path.join(work, "fold_0_1.json"), "w") as f:
                json.dump([float(x) for x in thresholds], f)
        if counter > args.stop_epochs:
            break
    print("final_val_auc=%.6f" % float(np.mean(aucs)))
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

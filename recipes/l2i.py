"""The L2I recipe: Listen to Interpret (``interpreters.l2i``) trained on a frozen classifier.

``L2IBrain`` first learns the NMF dictionary on the training fold (``learn_dictionary``: the
authors' ``train_nmf.py`` objective, ``nmf_epochs`` epochs of Adam at ``nmf_lr`` on the
``NMFEncoder`` + ``NMFDecoderAudio`` autoencoder of the log-spectrograms; skipped when the
interpreter's checkpoint says it is learned, so a resumed run keeps its dictionary). Then, with
the dictionary frozen, it trains ``Psi`` and ``Theta`` on the frozen classifier's stages with the
authors' L2I loss (``interpreters.l2i.l2i_loss``: the classifier's logits are its cosine scores
at the training scale of its run, ``model.json``'s ``score_scale``). On the validation fold it
scores the masks with the same metrics as every other method and keeps the checkpoint with the
best FID-I; on the test fold it writes the same outputs (test_metrics.json, interpretations/).

Modules (``modules`` in the YAML): ``features`` and ``interpreter``. Hyperparameters:
``alpha``, ``beta``, ``nmf_epochs``, ``nmf_lr``, ``class_names``, ``n_interpretations``,
``output_folder``, ``train_logger``, ``epoch_counter``.
"""

from __future__ import annotations

import speechbrain as sb
import torch
from tqdm import tqdm

from interpreters.l2i import l2i_loss
from recipes.posthoc import PosthocBrain

LOSS_TERMS = ("reconstruction", "sparsity", "fidelity")


class L2IBrain(PosthocBrain):
    """Learns the NMF dictionary, then trains and evaluates L2I on a frozen classifier."""

    LOSS_TERMS = LOSS_TERMS
    VALID_KEYS = ("acc", "fid_i", "fa")
    METHOD = "l2i"

    @property
    def l2i(self):
        """The interpreter itself (unwrapped when DDP wraps it)."""
        module = self.modules.interpreter
        return getattr(module, "module", module)

    def before_fit(self, train_set, loader_kwargs: dict) -> None:
        """Learns the NMF dictionary unless the latest checkpoint holds a learned one; it (and
        its encoder) stays frozen for the L2I stage."""
        if self.checkpointer is not None:
            self.checkpointer.recover_if_possible()
        if not bool(self.l2i.dictionary_learned):
            self.learn_dictionary(train_set, loader_kwargs)

    def learn_dictionary(self, train_set, loader_kwargs: dict) -> list[float]:
        """``nmf_epochs`` epochs of the NMF autoencoder on ``train_set``; returns each epoch's
        mean loss (logged to the train log). Under DDP each process learns on its share of the
        clips and the main process's dictionary is then broadcast to all."""
        interpreter = self.l2i
        nmf = [*interpreter.nmf_encoder.parameters(), *interpreter.nmf_decoder.parameters()]
        for parameter in nmf:
            parameter.requires_grad_(True)
        optimizer = torch.optim.Adam(nmf, lr=self.hparams.nmf_lr)
        loader = self.make_dataloader(train_set, stage=sb.Stage.TRAIN, **loader_kwargs)
        interpreter.train()
        history = []
        for epoch in range(1, int(self.hparams.nmf_epochs) + 1):
            total, count = 0.0, 0
            for batch in tqdm(loader, desc=f"NMF dictionary, epoch {epoch}", leave=False):
                batch = batch.to(self.device)
                wavs, _ = batch.signal
                with torch.no_grad():
                    log_spec, _ = self.modules.features(wavs)
                loss = torch.nn.functional.mse_loss(
                    interpreter.nmf_reconstruction(log_spec), log_spec
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total, count = total + float(loss) * len(batch.id), count + len(batch.id)
            history.append(total / max(count, 1))
            self.hparams.train_logger.log_stats(
                stats_meta={"nmf_epoch": epoch}, train_stats={"nmf_loss": history[-1]}
            )
        for parameter in nmf:
            parameter.requires_grad_(False)
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.broadcast(parameter.data, src=0)
        interpreter.dictionary_learned.fill_(True)
        return history

    def compute_forward(self, batch, stage):
        """Waveforms -> log-spectrogram -> frozen classifier's stages -> NMF activations and the
        mask of the predicted class."""
        batch = batch.to(self.device)
        wavs, _ = batch.signal
        log_spec, phase = self.modules.features(wavs, with_phase=stage == sb.Stage.TEST)
        with torch.no_grad():
            classified = self.frozen_classifier(log_spec, with_stages=True)
            scores = classified["scores"]
        out = self.modules.interpreter(classified["stages"])
        out["mask"] = self.l2i.mask(out["activations"], scores.argmax(dim=1))
        out.update(scores=scores, log_spec=log_spec, phase=phase, n_samples=wavs.shape[1])
        return out

    def compute_objectives(self, predictions, batch, stage):
        """The L2I loss; on validation and test, the interpretation metrics of the masks."""
        log_spec = predictions["log_spec"]
        logits = self.classifier_score_scale() * predictions["scores"]
        losses = l2i_loss(
            predictions, log_spec, logits, alpha=self.hparams.alpha, beta=self.hparams.beta
        )
        self.record_losses(losses, len(batch.id))
        if stage != sb.Stage.TRAIN:
            self.score_masks(
                batch,
                log_spec,
                predictions["phase"],
                predictions["mask"].detach(),
                predictions["scores"],
                predictions["n_samples"],
                save=stage == sb.Stage.TEST,
            )
        return losses["total"]

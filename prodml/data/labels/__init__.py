"""Data-centric tools for labels: consistency, consensus, human-level performance, errors.

Pure computation over annotations in long form (item, labeler, label, ...): nothing here
reads or writes the store (``pm.labels`` adds that, in :mod:`prodml.tracking.annotations`).
"""

from prodml.data.labels.agreement import (AgreementReport, ClassAgreement, LabelerAgreement,
                                          PairAgreement, agreement)
from prodml.data.labels.annotations import Annotations, as_annotations, normalise
from prodml.data.labels.augmentation import AugmentationCheck, augmentation_check
from prodml.data.labels.consensus import Consensus, LabelerQuality, consensus
from prodml.data.labels.disputes import Disputes, disputes, vote_entropy
from prodml.data.labels.human_level import human_level
from prodml.data.labels.label_issues import LabelIssues, issues
from prodml.data.labels.reliability import krippendorff_alpha

__all__ = ["AgreementReport", "Annotations", "AugmentationCheck", "ClassAgreement", "Consensus",
           "Disputes", "LabelIssues", "LabelerAgreement", "LabelerQuality", "PairAgreement",
           "agreement", "as_annotations", "augmentation_check", "consensus", "disputes",
           "human_level", "issues", "krippendorff_alpha", "normalise", "vote_entropy"]

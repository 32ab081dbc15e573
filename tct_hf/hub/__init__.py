"""Model cards and Hub upload."""

from .model_card import render_student_card, render_teacher_card
from .push import HubUploadError, push_model_dir

__all__ = ["HubUploadError", "push_model_dir", "render_student_card", "render_teacher_card"]

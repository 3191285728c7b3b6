"""Teachers write reasoning + ranking traces for stage-2 SFT (see ``gr2.traces``)."""

from gr2.teachers.base import Teacher, TeacherReply
from gr2.teachers.heuristic import CrossFitCooccurrence, HeuristicTeacher, HeuristicTeacherConfig
from gr2.teachers.llm import HFTeacher, LLMTeacherConfig, OpenAITeacher

__all__ = ["CrossFitCooccurrence", "HFTeacher", "HeuristicTeacher", "HeuristicTeacherConfig", "LLMTeacherConfig",
           "OpenAITeacher", "Teacher", "TeacherReply"]

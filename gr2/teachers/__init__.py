"""Teachers write reasoning + ranking traces for stage-2 SFT (see ``gr2.traces``)."""

from gr2.teachers.base import Teacher, TeacherReply
from gr2.teachers.heuristic import HeuristicTeacher, HeuristicTeacherConfig

__all__ = ["HeuristicTeacher", "HeuristicTeacherConfig", "Teacher", "TeacherReply"]

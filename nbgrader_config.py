# nbgrader in this course folder: its source notebooks are `course build`'s solutions/ and its
# release folder is exercises/, so nbgrader's exchange works on what the build wrote:
#   nbgrader db assignment add xor && nbgrader release_assignment xor     (instructor)
#   nbgrader fetch_assignment xor && nbgrader submit xor                  (student, on JupyterHub)
#   nbgrader collect xor && course grade submitted --lab xor              (instructor)
# Build with `course build`, not `nbgrader generate_assignment` (the build adds what nbgrader's
# does not: starter code, the install and hand-in cells); grade with `course grade` (sandboxed).
c = get_config()
c.CourseDirectory.course_id = "cnn-course"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
# c.Exchange.root = "/srv/nbgrader/exchange"     # nbgrader's default; where JupyterHub users meet

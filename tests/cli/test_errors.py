import pytest

from basicsr_lmar.checkpoints.state_dicts import CheckpointMismatchError
from basicsr_lmar.cli.errors import DEBUG_ENV_VAR, EXIT_INTERRUPTED, EXIT_USER_ERROR, run_main
from basicsr_lmar.data.image_files import ImageFileError
from basicsr_lmar.data.image_io import DataError
from basicsr_lmar.errors import UserError
from basicsr_lmar.options import OptionError


@pytest.fixture(autouse=True)
def _no_debug_env(monkeypatch):
    monkeypatch.delenv(DEBUG_ENV_VAR, raising=False)


def _raising(error):
    def main(argv):
        raise error
    return main


@pytest.mark.parametrize('error', [UserError('-o out: cannot write to out: permission denied'),
                                   OptionError('[train] total_iter is missing'),
                                   CheckpointMismatchError('x.pth does not fit CARResamplerNet'),
                                   DataError('dataroot_gt: folder is empty'),
                                   ImageFileError('a.png: not a readable image')])
def test_a_user_mistake_is_one_line_and_exit_code_2(error, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main(_raising(error), [], prog='tool.py')
    assert exit_info.value.code == EXIT_USER_ERROR
    out, err = capsys.readouterr()
    assert err == f'tool.py: error: {error}\n' and out == ''
    assert exit_info.value.__cause__ is None and exit_info.value.__suppress_context__  # no chained traceback


def test_a_bug_keeps_its_traceback():
    with pytest.raises(ZeroDivisionError):
        run_main(lambda argv: 1 / 0, [], prog='tool.py')
    with pytest.raises(KeyError):  # a plain ValueError/KeyError is not a user mistake
        run_main(_raising(KeyError('total_iter')), [], prog='tool.py')


def test_debug_flag_or_environment_shows_the_traceback(monkeypatch):
    with pytest.raises(UserError, match='bad'):
        run_main(_raising(UserError('bad')), ['-i', 'x', '--debug'], prog='tool.py')
    monkeypatch.setenv(DEBUG_ENV_VAR, '1')
    with pytest.raises(UserError, match='bad'):
        run_main(_raising(UserError('bad')), [], prog='tool.py')
    monkeypatch.setenv(DEBUG_ENV_VAR, '0')
    with pytest.raises(SystemExit):
        run_main(_raising(UserError('bad')), [], prog='tool.py')


def test_interrupt_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main(_raising(KeyboardInterrupt()), [], prog='tool.py')
    assert exit_info.value.code == EXIT_INTERRUPTED and capsys.readouterr().err == 'tool.py: interrupted\n'


def test_main_result_is_returned():
    assert run_main(lambda argv: argv, ['-i', 'x'], prog='tool.py') == ['-i', 'x']

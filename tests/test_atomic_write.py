import os

import pytest

from basicsr_lmar.atomic_write import PARTIAL_FILE, write_atomically


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / 'result.json'
    target.write_text('old')
    seen = []

    def broken(temporary):
        seen.append(temporary)
        with open(temporary, 'w') as handle:
            handle.write('half')
        raise OSError('disk full')

    with pytest.raises(OSError, match='disk full'):
        write_atomically(str(target), broken)
    assert os.listdir(tmp_path) == ['result.json'] and target.read_text() == 'old'
    assert seen == [f'{target}.tmp{os.getpid()}'] and PARTIAL_FILE.search(seen[0])


def test_a_complete_write_replaces_the_target_through_the_given_temporary(tmp_path):
    target, temporary = tmp_path / 'image.png', tmp_path / '.image.partial1.png'
    target.write_text('old')

    def write(path):
        assert path == str(temporary) and target.read_text() == 'old'
        with open(path, 'w') as handle:
            handle.write('new')

    write_atomically(str(target), write, str(temporary))
    assert os.listdir(tmp_path) == ['image.png'] and target.read_text() == 'new'

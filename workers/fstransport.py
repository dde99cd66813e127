"""kombu's filesystem transport with atomic writes, for the embedded profile's broker.

kombu writes a message file in place (create, lock, write) while a consumer moves any
``*.msg`` file it sees without taking the lock, so under load a worker can take a file
before its bytes are written and die on an empty payload (seen in ``make demo`` as
"Unrecoverable error: JSONDecodeError"). Writing to a hidden partial file and renaming it
into place makes a message visible only once it is complete; rename is atomic within a
folder on POSIX file systems.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        # A leading dot keeps the partial file out of every queue's name pattern.
        partial = os.path.join(self.data_folder_out, f".partial-{uuid.uuid4()}")
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, os.path.join(self.data_folder_out, name))
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot add {name!r} to {self.data_folder_out}") from exc


class Transport(filesystem.Transport):
    Channel = Channel

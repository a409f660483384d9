"""A TLS-terminating TCP proxy for the Kafka TLS test (tests/kafka_wire.rs).

    python3 tests/tls/proxy.py LISTEN_PORT TARGET_PORT CERT KEY

Listens on 127.0.0.1:LISTEN_PORT for TLS only (the test's self-signed certificate for
IP 127.0.0.1, cert.pem/key.pem beside this file), and forwards each connection's
plaintext to 127.0.0.1:TARGET_PORT (the broker). Prints "ready" once it listens, and a
line per TLS connection accepted. The broker advertises LISTEN_PORT, so every client
connection, bootstrap and partition leader alike, goes through TLS.
"""
import asyncio
import ssl
import sys


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def main(listen, target, cert, key):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    async def handle(client_reader, client_writer):
        print("tls connection", flush=True)
        broker_reader, broker_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(pipe(client_reader, broker_writer), pipe(broker_reader, client_writer))

    server = await asyncio.start_server(handle, "127.0.0.1", listen, ssl=context)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]))

// Xen Orchestra's XAPI client (npm xen-api) against a simulated pool, driven by
// tests/test_xen_api_client.py. Usage: node xen_api_client.mjs <xen-api index.mjs> <config JSON>
// config: url, user, password, transport (json-rpc|xml-rpc), watchEvents (bool).
// Prints one JSON line of what the client saw; every step is bounded in time.
import { pathToFileURL } from 'node:url'

const [modulePath, configText] = process.argv.slice(2)
const config = JSON.parse(configText)
const { createClient } = await import(pathToFileURL(modulePath).href)

setTimeout(() => {
  console.log(JSON.stringify({ error: 'timed out' }))
  process.exit(2)
}, 120e3).unref()

const coded = error => ({ code: error.code, params: error.params, message: String(error.message) })

const xapi = createClient({
  url: config.url,
  auth: { user: config.user, password: config.password },
  allowUnauthorized: true,
  transport: config.transport,
  watchEvents: config.watchEvents,
})
const out = {}
try {
  await xapi.connect()
  out.status = xapi.status
  out.pool = xapi.pool.$ref
  let host
  if (config.watchEvents) {
    await xapi.objectsFetched
    const objects = Object.values(xapi.objects.all)
    const names = type => objects.filter(o => o.$type === type).map(o => o.name_label)
    out.vms = names('VM')
    out.hosts = names('host')
    host = xapi.pool.$master
  } else {
    const hosts = await xapi.getAllRecords('host')
    out.hosts = hosts.map(h => h.name_label)
    host = hosts.find(h => h.$ref === xapi.pool.master)
  }
  out.master = host.name_label
  out.version = JSON.parse(await xapi.call('host.call_plugin', host.$ref, 'xenvol', 'version', {}))
  try {
    await xapi.call('VM.get_record', 'OpaqueRef:no-such-vm')
  } catch (error) {
    out.error = coded(error)
  }
  try {
    await xapi.call('host.call_plugin', host.$ref, 'xenvol', 'attach_volume', { vm_uuid: 'x', connection_info: '{' })
  } catch (error) {
    out.pluginError = coded(error)
  }
  if (config.watchEvents) {
    // Async.host.call_plugin, followed to its end through the task's events
    out.asyncVersion = JSON.parse(await xapi.callAsync('host.call_plugin', host.$ref, 'xenvol', 'version', {}))
    try {
      await xapi.callAsync('host.call_plugin', host.$ref, 'xenvol', 'no_such_function', {})
    } catch (error) {
      out.asyncError = coded(error)
      out.asyncErrorTask = error.task?.status
    }
  }
} catch (error) {
  out.failed = coded(error)
  out.stack = error.stack
} finally {
  await xapi.disconnect()
}
console.log(JSON.stringify(out))
process.exit(0)
